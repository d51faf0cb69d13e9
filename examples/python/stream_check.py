"""Streams many small events to Ingest and IngestScored from grpcio as fast as it can (grpcio sends
one HTTP/2 DATA frame per message) and asserts every one is accepted: the server must throttle a
fast client with flow control, never cut it off (GOAWAY ENHANCE_YOUR_CALM "too_many_data_frames").
Exit status 1 on any failure.

    python examples/python/stream_check.py --server 127.0.0.1:50051 --events 200000
"""
import argparse
import sys
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rapport_stubs import generate_stubs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tenant", default=f"pystream-{int(time.time())}")
    args = parser.parse_args()
    pb = generate_stubs()
    ipb, ing, ingpb = pb["interaction_pb2"], pb["ingest_pb2_grpc"], pb["ingest_pb2"]
    channel = grpc.insecure_channel(args.server)
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = ing.IngestServiceStub(channel)
    at = Timestamp()
    at.FromSeconds(int(time.time()) - 3600)

    def events(prefix):
        for i in range(args.events):
            yield ipb.Interaction(event_id=f"{prefix}{i}", tenant_id=args.tenant,
                                  customer_id=f"c{i % 1000}", channel=ipb.CHANNEL_WEB,
                                  kind=ipb.INTERACTION_KIND_PAGE_VIEW,
                                  direction=ipb.DIRECTION_INBOUND, occurred_at=at)

    failures = []
    started = time.time()
    try:
        summary = stub.Ingest(events("i"), timeout=600)
        print(f"Ingest: {summary.accepted} accepted, {summary.duplicates} duplicates, "
              f"{summary.rejected} rejected in {time.time() - started:.1f} s")
        if summary.accepted != args.events:
            failures.append(f"Ingest accepted {summary.accepted} of {args.events}")
    except grpc.RpcError as error:
        failures.append(f"Ingest failed: {error.code()} {error.details()}")

    started = time.time()
    replies = 0
    try:
        not_accepted = 0
        for reply in stub.IngestScored(events("s"), timeout=600):
            replies += 1
            if reply.outcome != ingpb.INGEST_OUTCOME_ACCEPTED:
                not_accepted += 1
        if not_accepted:
            failures.append(f"IngestScored: {not_accepted} events not accepted")
        print(f"IngestScored: {replies} replies in {time.time() - started:.1f} s")
        if replies != args.events:
            failures.append(f"IngestScored answered {replies} of {args.events}")
    except grpc.RpcError as error:
        failures.append(f"IngestScored failed after {replies} replies: {error.code()} {error.details()}")

    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
