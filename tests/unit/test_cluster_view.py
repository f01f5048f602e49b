"""The spillback policy (pyray.raylet.cluster_view), without processes."""
from pyray.raylet import cluster_view as cv
from pyray.raylet.resources import NodeResources

ME, A, B = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16
CPU1 = {"CPU": 1.0}


def table(a_avail=None, b_alive=True, a_total=None):
    a_total = a_total or {"CPU": 2.0, "gpu_box": 1.0}
    return [
        {"node_id": ME, "alive": True, "raylet_addr": "me", "om_addr": "om-me",
         "resources": {"CPU": 1.0}, "available": {"CPU": 1.0}},
        {"node_id": A, "alive": True, "raylet_addr": "ra", "om_addr": "om-a",
         "resources": a_total, "available": a_avail if a_avail is not None else dict(a_total)},
        {"node_id": B, "alive": b_alive, "raylet_addr": "rb", "om_addr": "om-b",
         "resources": {"CPU": 4.0}, "available": {"CPU": 4.0}},
    ]


def view(**kw):
    v = cv.ClusterView(ME)
    v.update(table(**kw))
    return v


def busy_local():
    res = NodeResources({"CPU": 1.0})
    res.acquire(CPU1)
    return res


def test_parse_key():
    assert cv.parse_key(((("CPU", 1.0),), None)) == (None, None)
    assert cv.parse_key(((("CPU", 1.0),), "SPREAD", A)) == ("SPREAD", A)
    assert cv.parse_key(("actor", b"x")) is None
    assert cv.parse_key("junk") is None


def test_lease_ids_are_unique_per_node_and_name_it():
    assert cv.lease_id_base(A) != cv.lease_id_base(B)
    assert (cv.lease_id_base(A) + 12345) >> 32 == cv.lease_id_base(A) >> 32


def test_update_tracks_peers_and_deaths():
    v = view(b_alive=False)
    assert set(v.peers) == {A} and v.dead == {B} and v.known == {ME, A, B}
    assert v.update(table(b_alive=False)) == []          # told once
    v.mark_dead(A)
    assert v.peers == {} and A in v.dead


def test_default_policy_prefers_this_node_then_the_freest_peer():
    v = view()
    free = NodeResources({"CPU": 1.0})
    assert v.decide(None, None, CPU1, free, None, False)[0] == cv.LOCAL
    code, peer, mode = v.decide(None, None, CPU1, busy_local(), None, False)
    assert (code, peer.node_id, mode) == (cv.SPILL, B, cv.GRANT_OR_REJECT)


def test_spilled_requests_queue_or_go_back():
    v = view()
    assert v.decide(None, None, CPU1, busy_local(), cv.GRANT_OR_REJECT, False)[0] == cv.REJECT
    assert v.decide(None, None, CPU1, busy_local(), cv.QUEUE, False)[0] == cv.LOCAL
    too_big = {"CPU": 8.0}
    assert v.decide(None, None, too_big, busy_local(), cv.QUEUE, False)[0] == cv.REJECT


def test_debit_stops_a_burst_from_going_to_one_peer():
    v = view(a_avail={"CPU": 1.0, "gpu_box": 1.0}, b_alive=False)
    code, peer, _ = v.decide(None, None, CPU1, busy_local(), None, False)
    assert (code, peer.node_id) == (cv.SPILL, A)
    v.debit(peer, CPU1)
    assert v.decide(None, None, CPU1, busy_local(), None, False)[0] == cv.LOCAL   # queue here


def test_custom_resources_and_infeasible():
    v = view(a_avail={"CPU": 0.0, "gpu_box": 0.0})
    shape = {"CPU": 1.0, "gpu_box": 1.0}
    code, peer, mode = v.decide(None, None, shape, NodeResources({"CPU": 1.0}), None, False)
    assert (code, peer.node_id, mode) == (cv.SPILL, A, cv.QUEUE)   # busy, but only A has it
    nowhere = {"CPU": 1.0, "tpu": 1.0}
    res = NodeResources({"CPU": 1.0})
    assert v.decide(None, None, nowhere, res, None, False)[0] == cv.REFRESH
    assert v.decide(None, None, nowhere, res, None, True)[0] == cv.INFEASIBLE


def test_locality_goes_to_the_argument_node_when_it_has_room():
    v = view()
    free = NodeResources({"CPU": 1.0})
    code, peer, _ = v.decide(None, A, CPU1, free, None, False)
    assert (code, peer.node_id) == (cv.SPILL, A)
    v = view(a_avail={"CPU": 0.0})
    assert v.decide(None, A, CPU1, free, None, False)[0] == cv.LOCAL


def test_node_affinity():
    v = view(b_alive=False)
    free = NodeResources({"CPU": 1.0})
    hard = lambda nid: ("node", nid.hex(), False)      # noqa: E731
    soft = lambda nid: ("node", nid.hex(), True)       # noqa: E731
    code, peer, mode = v.decide(hard(A), None, CPU1, free, None, False)
    assert (code, peer.node_id, mode) == (cv.SPILL, A, cv.QUEUE)
    assert v.decide(hard(ME), None, CPU1, busy_local(), None, False)[0] == cv.LOCAL
    code, msg, _ = v.decide(hard(B), None, CPU1, free, None, False)
    assert code == cv.FAIL and B.hex() in msg
    assert v.decide(soft(B), None, CPU1, free, None, False)[0] == cv.LOCAL
    unknown = b"\x09" * 16
    assert v.decide(hard(unknown), None, CPU1, free, None, False)[0] == cv.REFRESH
    assert v.decide(hard(unknown), None, CPU1, free, None, True)[0] == cv.FAIL
    assert v.decide(("node", "zz", False), None, CPU1, free, None, False)[0] == cv.FAIL
    assert v.decide(hard(A), None, {"CPU": 3.0}, free, None, False)[0] == cv.FAIL


def test_spread_takes_turns():
    v = view()
    free = NodeResources({"CPU": 1.0})
    got = []
    for _ in range(6):
        code, peer, _ = v.decide("SPREAD", None, CPU1, free, None, False)
        got.append(ME if code == cv.LOCAL else peer.node_id)
    assert sorted(got) == sorted([ME, A, B] * 2)
    assert got[:3] != got[1:4]
