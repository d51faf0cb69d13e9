"""rapport from Python: stubs generated from ../../proto at run time with grpcio-tools (no
hand-written protocol). Streams interactions, reads TopCustomers, checks health, lists services
through reflection, routes conversations to agents with skills and capacity (RoutingService and
ClaimNext), and asserts on the answers (exit status 1 on any mismatch).

    pip install grpcio grpcio-tools grpcio-health-checking grpcio-reflection
    python examples/python/client.py --server 127.0.0.1:50051
"""
import argparse
import math
import queue
import threading
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rapport_stubs import generate_stubs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--tenant", default=f"py-{int(time.time())}")
    args = parser.parse_args()
    pb = generate_stubs()
    ipb, ing, scp = pb["interaction_pb2"], pb["ingest_pb2_grpc"], pb["scoring_pb2"]
    channel = grpc.insecure_channel(args.server)
    grpc.channel_ready_future(channel).result(timeout=10)

    # Health.
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING, health
    print("health: SERVING")

    # Reflection: list services.
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    services = sorted(s.name for r in replies for s in r.list_services_response.service)
    print("services:", ", ".join(services))
    for wanted in ["rapport.v1.IngestService", "rapport.v1.ScoringService", "rapport.v1.SentimentService",
                   "rapport.v1.IdentityService", "rapport.v1.IntentService", "rapport.v1.RoutingService",
                   "grpc.health.v1.Health"]:
        assert wanted in services, (wanted, services)

    # Stream interactions: an angry public mention, a happy purchaser, one invalid event.
    now = time.time()

    def ts(seconds_ago):
        t = Timestamp()
        t.FromNanoseconds(int((now - seconds_ago) * 1e9))
        return t

    events = [
        ipb.Interaction(event_id="py-1", tenant_id=args.tenant, customer_id="angry-ann",
                        channel=ipb.CHANNEL_TWITTER, kind=ipb.INTERACTION_KIND_MENTION,
                        direction=ipb.DIRECTION_INBOUND, occurred_at=ts(120),
                        text="Lost my order AGAIN. Worst service ever!!", author_followers=51000),
        ipb.Interaction(event_id="py-2", tenant_id=args.tenant, customer_id="happy-hal",
                        channel=ipb.CHANNEL_EMAIL, kind=ipb.INTERACTION_KIND_PURCHASE,
                        direction=ipb.DIRECTION_INBOUND, occurred_at=ts(3600), value=49.9),
        ipb.Interaction(event_id="py-3", tenant_id=args.tenant, customer_id="",
                        channel=ipb.CHANNEL_EMAIL, kind=ipb.INTERACTION_KIND_MESSAGE,
                        direction=ipb.DIRECTION_INBOUND, occurred_at=ts(60), text="hello"),
    ]
    summary = ing.IngestServiceStub(channel).Ingest(iter(events), timeout=10)
    print(f"ingest: accepted {summary.accepted} duplicates {summary.duplicates} rejected {summary.rejected}")
    assert (summary.accepted, summary.duplicates, summary.rejected) == (2, 0, 1), summary
    assert summary.rejections[0].reason.startswith("customer_id"), summary.rejections

    # TopCustomers: the angry public mention comes first, to be answered.
    top = pb["scoring_pb2_grpc"].ScoringServiceStub(channel).TopCustomers(
        scp.TopCustomersRequest(tenant_id=args.tenant, limit=5), timeout=5)
    for c in top.customers:
        print(f"top: {c.customer_id} {ipb.Action.Name(c.action)} priority {c.priority:.3f}")
    assert [c.customer_id for c in top.customers][:1] == ["angry-ann"], top
    assert top.customers[0].action == ipb.ACTION_RESPOND, top.customers[0]
    assert len(top.customers) == 2
    ann = top.customers[0]
    # Her reply is due one SLA (1 h by default) after the mention; reasons carry their group, and
    # the risk factors' contributions sum to the log-odds of her retention risk.
    assert ann.HasField("reply_due_at") and ann.open_threads == 1, ann
    assert abs(ann.reply_due_at.seconds - (ts(120).seconds + 3600)) <= 1, ann.reply_due_at
    groups = {r.factor: r.group for r in ann.reasons}
    assert groups["unanswered"] == ipb.REASON_GROUP_PRIORITY, groups
    assert groups["activity"] == ipb.REASON_GROUP_RISK, groups
    risk_log_odds = sum(r.contribution for r in ann.reasons if r.group == ipb.REASON_GROUP_RISK)
    assert abs(1 / (1 + math.exp(-risk_log_odds)) - ann.retention_risk) < 1e-9, ann

    # reply_need stated by the client: a message that needs no answer opens nothing.
    closing = ipb.Interaction(event_id="py-4", tenant_id=args.tenant, customer_id="calm-cat",
                              channel=ipb.CHANNEL_EMAIL, kind=ipb.INTERACTION_KIND_MESSAGE,
                              direction=ipb.DIRECTION_INBOUND, occurred_at=ts(60),
                              text="see you next week", reply_need=ipb.REPLY_NEED_NOT_REQUIRED)
    summary = ing.IngestServiceStub(channel).Ingest(iter([closing]), timeout=10)
    assert summary.accepted == 1, summary
    cat = pb["scoring_pb2_grpc"].ScoringServiceStub(channel).GetCustomer(
        scp.GetCustomerRequest(tenant_id=args.tenant, customer_id="calm-cat"), timeout=5)
    assert cat.action != ipb.ACTION_RESPOND and cat.open_threads == 0, cat

    # Identity: a tweet known only by its handle, then the CRM links the handle and an e-mail to
    # its own id; the handle's derived id answers for the merged customer.
    tweet = ipb.Interaction(event_id="py-5", tenant_id=args.tenant, channel=ipb.CHANNEL_TWITTER,
                            kind=ipb.INTERACTION_KIND_MENTION, direction=ipb.DIRECTION_INBOUND,
                            occurred_at=ts(30), text="anyone there?",
                            identifiers=[ipb.Identifier(type=ipb.IDENTIFIER_TYPE_HANDLE, value="@Py_Ann")])
    summary = ing.IngestServiceStub(channel).Ingest(iter([tweet]), timeout=10)
    assert summary.accepted == 1, summary
    idpb = pb["identity_pb2"]
    linked = pb["identity_pb2_grpc"].IdentityServiceStub(channel).LinkIdentities(
        idpb.LinkIdentitiesRequest(tenant_id=args.tenant, customer_id="crm-py", identifiers=[
            ipb.Identifier(type=ipb.IDENTIFIER_TYPE_EMAIL, value="Py.Ann@Example.com"),
            ipb.Identifier(type=ipb.IDENTIFIER_TYPE_HANDLE, value="py_ann", channel=ipb.CHANNEL_TWITTER)]),
        timeout=5)
    assert linked.customer_id == "crm-py" and list(linked.merged_customer_ids) == ["~handle:twitter:py_ann"], linked
    merged = pb["scoring_pb2_grpc"].ScoringServiceStub(channel).GetCustomer(
        scp.GetCustomerRequest(tenant_id=args.tenant, customer_id="~handle:twitter:py_ann"), timeout=5)
    assert merged.customer_id == "crm-py" and merged.interactions_total == 1, merged
    try:
        pb["identity_pb2_grpc"].IdentityServiceStub(channel).LinkIdentities(
            idpb.LinkIdentitiesRequest(tenant_id=args.tenant, customer_id="crm-py", identifiers=[
                ipb.Identifier(type=ipb.IDENTIFIER_TYPE_EMAIL, value="null@example.com")]), timeout=5)
        raise AssertionError("a placeholder e-mail was linked")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert error.details().startswith("identifiers[0].value"), error.details()
    print(f"identity: {linked.customer_id} holds {len(linked.identifiers)} identifiers")

    # Claims: an agent takes the first customer to reach, and gives it back.
    scoring = pb["scoring_pb2_grpc"].ScoringServiceStub(channel)
    claimed = scoring.ClaimNext(scp.ClaimNextRequest(tenant_id=args.tenant, agent_id="py-agent"), timeout=5)
    assert claimed.customer.claimed_by == "py-agent", claimed
    scoring.ReleaseClaim(scp.ClaimRequest(tenant_id=args.tenant, agent_id="py-agent",
                                          customer_id=claimed.customer.customer_id), timeout=5)
    print(f"claims: py-agent took and released {claimed.customer.customer_id}")

    # Intents and urgency cues: the tenant's list, then a stream of IngestScored replies that read
    # each text as one of its intents (or none) with its cues; a bad list is refused naming the
    # field, and TopCustomers filters by intent.
    inpb, intents = pb["intent_pb2"], pb["intent_pb2_grpc"].IntentServiceStub(channel)
    shop = [
        inpb.Intent(name="refund", examples=["I want my money back", "please refund my order",
                                             "refund me now", "je veux être remboursé"]),
        inpb.Intent(name="lost_parcel", examples=["my parcel never arrived", "where is my package",
                                                  "the delivery is lost", "mon colis n'est jamais arrivé"]),
    ]
    intents.SetIntents(inpb.SetIntentsRequest(tenant_id=args.tenant, intents=shop), timeout=5)
    got = intents.GetIntents(inpb.GetIntentsRequest(tenant_id=args.tenant), timeout=5)
    assert [i.name for i in got.intents] == ["refund", "lost_parcel"], got
    try:
        intents.SetIntents(inpb.SetIntentsRequest(tenant_id=args.tenant, intents=[
            inpb.Intent(name="Refund!", examples=["x y"])]), timeout=5)
        raise AssertionError("a bad intent name was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert error.details().startswith("intents[0].name"), error.details()
    texts = [("py-6", "refund-rita", "please refund my order or I call my lawyer"),
             ("py-7", "parcel-pia", "mon colis n'est toujours pas arrivé, troisième fois que j'écris"),
             ("py-8", "sunny-sam", "what a lovely sunny day at the beach")]
    scored = [ipb.Interaction(event_id=e, tenant_id=args.tenant, customer_id=c, channel=ipb.CHANNEL_EMAIL,
                              kind=ipb.INTERACTION_KIND_MESSAGE, direction=ipb.DIRECTION_INBOUND,
                              occurred_at=ts(10), text=t) for e, c, t in texts]
    replies = list(ing.IngestServiceStub(channel).IngestScored(iter(scored), timeout=10))
    read = [(r.sentiment.intent, sorted(ipb.UrgencyCue.Name(c) for c in r.sentiment.urgency_cues))
            for r in replies]
    print("intents and cues:", read)
    assert read == [("refund", ["URGENCY_CUE_LEGAL_THREAT"]),
                    ("lost_parcel", ["URGENCY_CUE_REPEAT_CONTACT"]),
                    ("", [])], read
    assert 0 < replies[0].sentiment.intent_confidence <= 1, replies[0].sentiment
    assert list(replies[0].score.waiting_intents) == ["refund"], replies[0].score
    about_refund = scoring.TopCustomers(scp.TopCustomersRequest(tenant_id=args.tenant, limit=10,
                                                                intent="refund"), timeout=5)
    assert [c.customer_id for c in about_refund.customers] == ["refund-rita"], about_refund

    # Languages: each inbound text's language is read at ingest; TopCustomers and ClaimNext filter
    # by it, and a code that is no language is refused naming the field.
    assert list(replies[1].score.waiting_languages) == ["fr"], replies[1].score
    in_french = scoring.TopCustomers(scp.TopCustomersRequest(tenant_id=args.tenant, limit=10,
                                                             language="fr"), timeout=5)
    assert [c.customer_id for c in in_french.customers] == ["parcel-pia"], in_french
    try:
        scoring.TopCustomers(scp.TopCustomersRequest(tenant_id=args.tenant, limit=10,
                                                     language="xx"), timeout=5)
        raise AssertionError("an unknown language was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert error.details().startswith("language"), error.details()
    french_claim = scoring.ClaimNext(scp.ClaimNextRequest(tenant_id=args.tenant, agent_id="py-fr",
                                                          language="fr"), timeout=5)
    assert french_claim.customer.customer_id == "parcel-pia", french_claim

    # Noise: the same promotion ten times in twenty minutes is a flood, kept out of RESPOND with
    # its reason; the same question on e-mail and Twitter is one matter.
    promo = "Flash sale today only: half price on every sneaker in our online shop"
    flood = [ipb.Interaction(event_id=f"py-promo-{i}", tenant_id=args.tenant, customer_id="promo-bot",
                             channel=ipb.CHANNEL_TWITTER, kind=ipb.INTERACTION_KIND_MENTION,
                             direction=ipb.DIRECTION_INBOUND, occurred_at=ts(30 - 2 * i),
                             thread_id=f"promo-{i}", author_followers=5000, text=promo)
             for i in range(10)]
    question = "I was charged twice for my last order, can you refund one of them please?"
    flood += [ipb.Interaction(event_id=f"py-cross-{n}", tenant_id=args.tenant, customer_id="cross-cleo",
                              channel=channel_, kind=ipb.INTERACTION_KIND_MESSAGE,
                              direction=ipb.DIRECTION_INBOUND, occurred_at=ts(20 - n),
                              thread_id=f"cross-{n}", text=question)
              for n, channel_ in enumerate([ipb.CHANNEL_EMAIL, ipb.CHANNEL_TWITTER])]
    summary = ing.IngestServiceStub(channel).Ingest(iter(flood), timeout=10)
    assert summary.accepted == len(flood), summary
    bot = scoring.GetCustomer(scp.GetCustomerRequest(tenant_id=args.tenant, customer_id="promo-bot"),
                              timeout=5)
    assert bot.priority < 0.5 and bot.open_threads == 0, bot
    assert any(r.factor == "flood" for r in bot.reasons), bot.reasons
    cleo = scoring.GetCustomer(scp.GetCustomerRequest(tenant_id=args.tenant, customer_id="cross-cleo"),
                               timeout=5)
    assert cleo.open_threads == 1, cleo
    assert any(r.factor == "copies_joined" for r in cleo.reasons), cleo.reasons
    print("noise:", [r.detail for r in bot.reasons if r.factor == "flood"])

    check_routing(pb, channel, f"{args.tenant}-routing", ts)
    check_offers(pb, channel, f"{args.tenant}-offers", ts)
    print("python client: all checks passed")


def check_routing(pb, channel, tenant, ts):
    """Routing engine: agents with skills and per-channel capacity claim one conversation at a
    time (a customer and the thread to answer) that fits them; an answer in the thread frees the
    capacity; an AWAY agent takes nothing new. In a tenant of its own, so the agents above that
    claimed whole customers stay apart."""
    from rapport.v1 import routing_pb2 as rpb, routing_pb2_grpc

    ipb, scp = pb["interaction_pb2"], pb["scoring_pb2"]
    ingest = pb["ingest_pb2_grpc"].IngestServiceStub(channel)
    scoring = pb["scoring_pb2_grpc"].ScoringServiceStub(channel)
    routing = routing_pb2_grpc.RoutingServiceStub(channel)
    english = "I have been waiting two weeks for my order and nobody answers me"
    billing = "You charged my card twice this month, please refund the second payment"
    french = "Bonjour, je n'arrive pas à me connecter à mon compte depuis hier soir"
    german = "Ich warte seit zwei Wochen auf meine Bestellung und niemand antwortet mir"
    email, chat = ipb.CHANNEL_EMAIL, ipb.CHANNEL_CHAT
    # (customer, thread, channel, text, language); "ro-multi" has two matters on two channels (two
    # different texts: the same text twice would be one cross-posted matter).
    waiting = [("ro-en1", "ro-t-en1", email, english, "en"),
               ("ro-en2", "ro-t-en2", chat, english, "en"),
               ("ro-fr1", "ro-t-fr1", email, french, "fr"),
               ("ro-fr2", "ro-t-fr2", chat, french, "fr"),
               ("ro-de1", "ro-t-de1", email, german, "de"),
               ("ro-multi", "ro-t-multi-mail", email, billing, "en"),
               ("ro-multi", "ro-t-multi-chat", chat, english, "en")]
    events = [ipb.Interaction(event_id=f"ro-{i}", tenant_id=tenant, customer_id=c, channel=ch,
                              kind=ipb.INTERACTION_KIND_MESSAGE, direction=ipb.DIRECTION_INBOUND,
                              occurred_at=ts(180 - 10 * i), thread_id=t, text=text)
              for i, (c, t, ch, text, _) in enumerate(waiting)]
    summary = ingest.Ingest(iter(events), timeout=10)
    assert (summary.accepted, summary.rejected) == (len(events), 0), summary
    multi = scoring.GetCustomer(scp.GetCustomerRequest(tenant_id=tenant, customer_id="ro-multi"),
                                timeout=5)
    assert multi.open_threads == 2, multi
    language_of = {t: lang for _, t, _, _, lang in waiting}

    # Agents: a bad one is refused naming the field; an unknown one is NOT_FOUND.
    def cap(ch, n):
        return rpb.ChannelCapacity(channel=ch, max_conversations=n)

    agents = [rpb.Agent(agent_id="py-en", status=rpb.AGENT_STATUS_AVAILABLE, languages=["en"],
                        capacity=[cap(chat, 1), cap(email, 1)]),
              rpb.Agent(agent_id="py-fr", status=rpb.AGENT_STATUS_AVAILABLE, languages=["fr"],
                        capacity=[cap(email, 1)])]
    for agent in agents:
        put = routing.PutAgent(rpb.PutAgentRequest(tenant_id=tenant, agent=agent), timeout=5)
        assert put.agent.agent_id == agent.agent_id and put.agent.status == agent.status, put
        assert list(put.agent.languages) == list(agent.languages) and len(put.load) == 0, put
        assert sorted((c.channel, c.max_conversations) for c in put.agent.capacity) == \
            sorted((c.channel, c.max_conversations) for c in agent.capacity), put
    try:
        routing.PutAgent(rpb.PutAgentRequest(tenant_id=tenant, agent=rpb.Agent(
            agent_id="py-bad", status=rpb.AGENT_STATUS_AVAILABLE, languages=["en", "xx"],
            capacity=[cap(email, 1)])), timeout=5)
        raise AssertionError("an agent with an unknown language was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert error.details().startswith("agent.languages[1]"), error.details()
    try:
        routing.GetAgent(rpb.GetAgentRequest(tenant_id=tenant, agent_id="py-nobody"), timeout=5)
        raise AssertionError("an unknown agent was found")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND, error

    def loads():
        """Live claims per agent and channel, as ListAgents tells them."""
        listed = routing.ListAgents(rpb.ListAgentsRequest(tenant_id=tenant), timeout=5)
        assert [a.agent.agent_id for a in listed.agents] == ["py-en", "py-fr"], listed
        return {a.agent.agent_id: {l.channel: l.max_conversations for l in a.load}
                for a in listed.agents}

    def claim(agent_id):
        """One ClaimNext: (customer_id, conversation), or None when nothing fits."""
        got = scoring.ClaimNext(scp.ClaimNextRequest(tenant_id=tenant, agent_id=agent_id), timeout=5)
        if not got.HasField("customer"):
            assert not got.HasField("conversation"), got
            return None
        assert got.customer.claimed_by == agent_id and got.HasField("conversation"), got
        return got.customer.customer_id, got.conversation

    # Each agent claims until nothing fits it: only its languages, never above its capacity on a
    # channel, never a thread another holds.
    held = {}  # thread -> (agent, customer, channel)
    for agent in agents:
        languages = set(agent.languages)
        capacity = {c.channel: c.max_conversations for c in agent.capacity}
        for _ in range(10):
            got = claim(agent.agent_id)
            if got is None:
                break
            customer_id, conversation = got
            thread = conversation.thread_id
            assert conversation.language in languages, (agent.agent_id, conversation)
            assert language_of[thread] == conversation.language, (thread, conversation)
            assert conversation.channel in capacity, (agent.agent_id, conversation)
            assert conversation.HasField("waiting_since") and conversation.HasField("reply_due_at"), \
                conversation
            assert thread not in held, (thread, held[thread], agent.agent_id)
            held[thread] = (agent.agent_id, customer_id, conversation.channel)
        else:
            raise AssertionError(f"{agent.agent_id} never ran out of work")
        mine = [ch for a, _, ch in held.values() if a == agent.agent_id]
        counts = {ch: mine.count(ch) for ch in set(mine)}
        assert all(n <= capacity[ch] for ch, n in counts.items()), (agent.agent_id, counts, capacity)
        assert loads()[agent.agent_id] == counts, (agent.agent_id, loads(), counts)
    # py-en fills both its channels (English waits on each), py-fr its e-mail with the French one;
    # the French chat and the German e-mail fit nobody.
    assert loads() == {"py-en": {chat: 1, email: 1}, "py-fr": {email: 1}}, loads()
    assert {t for t, (a, _, _) in held.items() if a == "py-fr"} == {"ro-t-fr1"}, held
    assert "ro-t-fr2" not in held and "ro-t-de1" not in held, held

    # An answer in one of py-en's threads ends that claim and frees its channel; py-en claims
    # again and gets another English conversation on that channel.
    answered, (_, customer_id, answered_channel) = next(
        (t, h) for t, h in sorted(held.items()) if h[0] == "py-en")
    reply = ipb.Interaction(event_id="ro-reply-1", tenant_id=tenant, customer_id=customer_id,
                            channel=answered_channel, kind=ipb.INTERACTION_KIND_MESSAGE,
                            direction=ipb.DIRECTION_OUTBOUND, occurred_at=ts(0),
                            thread_id=answered, agent_id="py-en",
                            text="Sorry for the wait, we are looking into it right now.")
    summary = ingest.Ingest(iter([reply]), timeout=10)
    assert summary.accepted == 1, summary
    en = routing.GetAgent(rpb.GetAgentRequest(tenant_id=tenant, agent_id="py-en"), timeout=5)
    en_load = {l.channel: l.max_conversations for l in en.load}
    assert en_load.get(answered_channel, 0) == 0 and sum(en_load.values()) == 1, en
    got = claim("py-en")
    assert got is not None, "py-en got nothing after its answer freed a channel"
    customer_again, again = got
    assert again.channel == answered_channel and again.language == "en", again
    assert again.thread_id not in held, (again, held)
    held[again.thread_id] = ("py-en", customer_again, again.channel)
    assert claim("py-en") is None  # full again

    # AWAY: py-fr keeps what it holds, takes nothing new, and gives its conversation back by thread.
    away = routing.SetAgentStatus(rpb.SetAgentStatusRequest(
        tenant_id=tenant, agent_id="py-fr", status=rpb.AGENT_STATUS_AWAY), timeout=5)
    assert away.agent.status == rpb.AGENT_STATUS_AWAY and len(away.load) == 1, away
    try:
        claim("py-fr")
        raise AssertionError("an AWAY agent claimed work")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
    released = scoring.ReleaseClaim(scp.ClaimRequest(tenant_id=tenant, agent_id="py-fr",
                                                     customer_id="ro-fr1", thread_id="ro-t-fr1"),
                                    timeout=5)
    assert not released.HasField("customer"), released
    fr = routing.GetAgent(rpb.GetAgentRequest(tenant_id=tenant, agent_id="py-fr"), timeout=5)
    assert len(fr.load) == 0, fr
    try:
        scoring.ReleaseClaim(scp.ClaimRequest(tenant_id=tenant, agent_id="py-fr",
                                              customer_id="ro-fr1", thread_id="ro-t-fr1"), timeout=5)
        raise AssertionError("a claim was released twice")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
    print(f"routing: py-en and py-fr claimed {len(held)} conversations within capacity "
          f"({answered} answered, ro-t-fr1 released while AWAY)")


def check_offers(pb, channel, tenant, ts):
    """Push routing: WatchOffers offers each watched agent with room one conversation at a time;
    a declined conversation goes to others and the decliner is offered other work; an accepted
    offer is a claim. In a tenant of its own; every wait is bounded."""
    from rapport.v1 import routing_pb2 as rpb, routing_pb2_grpc

    ipb = pb["interaction_pb2"]
    ingest = pb["ingest_pb2_grpc"].IngestServiceStub(channel)
    routing = routing_pb2_grpc.RoutingServiceStub(channel)
    email = ipb.CHANNEL_EMAIL
    # Three waiting English e-mails from three customers (distinct texts too: the noise rule
    # joins a customer's identical text on two threads).
    waiting = [("of-c1", "of-t1", "I have been waiting two weeks for my order and nobody answers me"),
               ("of-c2", "of-t2", "You charged my card twice this month, please refund the second payment"),
               ("of-c3", "of-t3", "My password reset link never arrives, I cannot log in to my account")]
    events = [ipb.Interaction(event_id=f"of-{i}", tenant_id=tenant, customer_id=c, channel=email,
                              kind=ipb.INTERACTION_KIND_MESSAGE, direction=ipb.DIRECTION_INBOUND,
                              occurred_at=ts(300 - 30 * i), thread_id=t, text=text)
              for i, (c, t, text) in enumerate(waiting)]
    summary = ingest.Ingest(iter(events), timeout=10)
    assert (summary.accepted, summary.rejected) == (len(events), 0), summary
    customer_of = {t: c for c, t, _ in waiting}
    agent_ids = ["py-of-a", "py-of-b"]
    for agent_id in agent_ids:
        put = routing.PutAgent(rpb.PutAgentRequest(tenant_id=tenant, agent=rpb.Agent(
            agent_id=agent_id, status=rpb.AGENT_STATUS_AVAILABLE, languages=["en"],
            capacity=[rpb.ChannelCapacity(channel=email, max_conversations=1)])), timeout=5)
        assert put.agent.agent_id == agent_id and len(put.load) == 0, put

    # A timeout outside [5, 600] s is refused naming the field (on the stream's first read).
    for bad in [4, 601]:
        try:
            next(iter(routing.WatchOffers(rpb.WatchOffersRequest(
                tenant_id=tenant, agent_ids=agent_ids, offer_timeout_seconds=bad), timeout=5)))
            raise AssertionError(f"offer_timeout_seconds={bad} was accepted")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert error.details().startswith("offer_timeout_seconds:"), error.details()

    # The stream, read by a background thread into a queue; every wait on it is bounded.
    call = routing.WatchOffers(rpb.WatchOffersRequest(tenant_id=tenant, agent_ids=agent_ids,
                                                      offer_timeout_seconds=5), timeout=120)
    offers, ended = queue.Queue(), {}

    def read():
        try:
            for offer in call:
                offers.put(offer)
        except grpc.RpcError as error:
            ended["code"] = error.code()
        offers.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def next_offer(wait=20):
        try:
            offer = offers.get(timeout=wait)
        except queue.Empty:
            raise AssertionError(f"no offer within {wait} s") from None
        assert offer is not None, f"the offer stream ended early: {ended}"
        return offer

    def check(offer, started):
        assert offer.agent_id in agent_ids, offer
        assert offer.HasField("conversation") and offer.conversation.thread_id in customer_of, offer
        assert offer.conversation.channel == email and offer.conversation.language == "en", offer
        assert offer.customer.customer_id == customer_of[offer.conversation.thread_id], offer
        assert offer.customer.claimed_by == offer.agent_id, offer
        # It lapses offer_timeout_seconds after it was made.
        expires = offer.expires_at.ToNanoseconds() / 1e9
        assert started + 4 <= expires <= time.time() + 6, (started, expires, offer)
        return offer

    try:
        started = time.time()
        first = [check(next_offer(), started), check(next_offer(), started)]
        by_agent = {o.agent_id: o for o in first}
        assert sorted(by_agent) == agent_ids, first
        assert first[0].conversation.thread_id != first[1].conversation.thread_id, first
        declined, accepted = by_agent["py-of-a"], by_agent["py-of-b"]

        def answer(offer, accept):
            return routing.AnswerOffer(rpb.AnswerOfferRequest(
                tenant_id=tenant, agent_id=offer.agent_id, customer_id=offer.customer.customer_id,
                thread_id=offer.conversation.thread_id, accept=accept, ttl_seconds=300), timeout=5)

        # Declined: the answer holds no claim, and the offer is no longer open.
        started = time.time()
        gone = answer(declined, False)
        assert not gone.HasField("customer"), gone
        try:
            answer(declined, False)
            raise AssertionError("an offer was answered twice")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
        # py-of-a is offered other work (py-of-b, full of its own offer, gets nothing new).
        again = check(next_offer(), started)
        assert again.agent_id == "py-of-a", again
        assert again.conversation.thread_id not in {o.conversation.thread_id for o in first}, again

        # Accepted: a claim for py-of-b, its e-mail load 1.
        taken = answer(accepted, True)
        assert taken.customer.customer_id == accepted.customer.customer_id, taken
        assert taken.customer.claimed_by == "py-of-b", taken
        b = routing.GetAgent(rpb.GetAgentRequest(tenant_id=tenant, agent_id="py-of-b"), timeout=5)
        assert {l.channel: l.max_conversations for l in b.load} == {email: 1}, b
    finally:
        call.cancel()
        reader.join(timeout=10)
    assert not reader.is_alive(), "the offer stream did not end after cancel"
    assert ended.get("code") == grpc.StatusCode.CANCELLED, ended
    print(f"offers: py-of-a declined {declined.conversation.thread_id} and was offered "
          f"{again.conversation.thread_id}; py-of-b accepted {accepted.conversation.thread_id}")


if __name__ == "__main__":
    main()
