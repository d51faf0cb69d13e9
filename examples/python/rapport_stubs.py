"""rapport's Python gRPC stubs, generated from proto/ at run time with grpcio-tools (no hand-written
protocol): shared by examples/python/client.py and benches/retention/cdnow_retention.py."""
import importlib
import os
import sys
import tempfile

from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
MODULES = ["interaction_pb2", "ingest_pb2", "ingest_pb2_grpc", "scoring_pb2", "scoring_pb2_grpc",
           "identity_pb2", "identity_pb2_grpc", "admin_pb2", "admin_pb2_grpc", "intent_pb2",
           "intent_pb2_grpc"]


def generate_stubs(out_dir=None):
    """Compiles proto/rapport/v1/*.proto into `out_dir` (a new temp dir by default) and imports the
    modules; returns them by name (e.g. `pb["ingest_pb2"]`)."""
    out = out_dir or tempfile.mkdtemp(prefix="rapport-stubs-")
    files = sorted(
        os.path.join("rapport", "v1", name)
        for name in os.listdir(os.path.join(PROTO_ROOT, "rapport", "v1"))
        if name.endswith(".proto")
    )
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
         f"--python_out={out}", f"--grpc_python_out={out}", *files]
    )
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out)
    return {n: importlib.import_module(f"rapport.v1.{n}") for n in MODULES}
