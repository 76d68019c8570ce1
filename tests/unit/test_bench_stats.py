from bench.stats import hop_split, parse_wrk, percentile, summary, table


def test_percentile_nearest_rank() -> None:
    vals = list(range(1, 101))
    assert percentile(vals, 50) == 50
    assert percentile(vals, 99) == 99
    assert percentile([7.0], 90) == 7.0
    assert summary([])["n"] == 0


def test_parse_wrk_line() -> None:
    out = ('noise\nWRKJSON {"requests": 100, "duration_us": 2000000, "p50": 1500, "p90": 3000, "p99": 9000, '
           '"mean": 1800.0, "max": 12000, "errors": {"connect": 0, "read": 0, "write": 0, "status": 1, '
           '"timeout": 0}, "codes": {"200": 99, "500": 1}}\n')
    d = parse_wrk(out)
    assert d["p50"] == 1.5 and d["p99"] == 9.0
    assert d["rps"] == 50.0
    assert d["codes"] == {200: 99, 500: 1}


def test_hop_split_and_table() -> None:
    t = {"sent": 0, "requested": 2, "authorized": 3, "assigned": 5, "start": 6, "end": 8, "completed": 9,
         "received": 12}
    hops = hop_split(t)
    assert sum(hops.values()) == 12
    assert hops["container run + logs"] == 2
    assert "| a" in table([("a", "b", "c", "d")])
