"""pyray.data core: the executor on a real local cluster — streaming,
backpressure over a pipeline larger than the store, fusion, actor pools,
faults, errors, ordering, stats and progress."""
import os
import signal
import time

import numpy as np
import pyarrow as pa
import pytest

import pyray
import pyray.data as rd

STORE = 128 << 20


@pytest.fixture(scope="module", autouse=True)
def cluster():
    info = pyray.init(num_cpus=2, object_store_memory=STORE)
    yield info
    pyray.shutdown()


@pytest.fixture(autouse=True)
def quiet():
    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    yield


class Blocks(rd.Datasource):
    """n read tasks, each one block of `rows` float64 rows and `width` columns;
    each read can sleep and drop a marker file."""

    def __init__(self, n, rows=1000, width=1, sleep=0.0, marker_dir=None):
        self.n, self.rows, self.width = n, rows, width
        self.sleep, self.marker_dir = sleep, marker_dir

    def get_read_tasks(self, parallelism):
        tasks = []
        for i in range(self.n):
            def read(i=i, rows=self.rows, width=self.width, sleep=self.sleep,
                     marker_dir=self.marker_dir):
                if sleep:
                    time.sleep(sleep)
                if marker_dir:
                    open(os.path.join(marker_dir, f"read-{i}"), "w").close()
                base = np.arange(i * rows, (i + 1) * rows, dtype=np.float64)
                yield pa.table({f"c{j}": base for j in range(width)})
            tasks.append(rd.ReadTask(read, rd.BlockMetadata(self.rows, self.rows * 8 *
                                                            self.width, None, [])))
        return tasks


def test_streaming_first_batch_before_last_read(tmp_path):
    ds = rd.read_datasource(Blocks(30, sleep=0.05, marker_dir=str(tmp_path)))
    it = ds.iter_batches(batch_size=None)
    first = next(it)
    assert len(first["c0"]) == 1000
    done = {p.name for p in tmp_path.iterdir()}
    assert "read-29" not in done and len(done) < 30, done
    rest = sum(len(b["c0"]) for b in it)
    assert rest == 29 * 1000
    assert len(list(tmp_path.iterdir())) == 30


def test_pipeline_four_times_the_store_finishes_without_spilling(cluster):
    spill = os.path.join(cluster["session_dir"], "spill")
    n, rows = 128, 1 << 19                       # 128 blocks of 4 MiB = 4x the store
    ds = rd.read_datasource(Blocks(n, rows=rows)).map_batches(
        lambda b: {"c0": b["c0"] * 2}, batch_size=None)
    def spilled_bytes():
        if not os.path.isdir(spill):
            return 0
        return sum(os.path.getsize(os.path.join(spill, f)) for f in os.listdir(spill))
    base = spilled_bytes()                       # the spill file's header
    total = 0.0
    spilled = 0
    for b in ds.iter_batches(batch_size=None):
        total += float(b["c0"].sum())
        spilled = max(spilled, spilled_bytes() - base)
    exp = 2 * float(np.arange(n * rows, dtype=np.float64).sum())
    assert total == exp
    assert spilled == 0
    budget = int(STORE * rd.DataContext.get_current().object_store_memory_fraction)
    # what the pipeline held at once stayed near its budget (a task or two over)
    assert ds._stats.peak_held_bytes <= budget + 3 * rows * 8, ds._stats.peak_held_bytes


def test_fusion_one_task_per_block_and_count_from_metadata(tmp_path):
    marker = tmp_path / "ran"

    def touch(r):
        marker.touch()
        return r
    ds = rd.range(100, override_num_blocks=4).map(touch).map_batches(lambda b: b)
    assert rd.range(100).map(touch).count() == 100 and not marker.exists()
    assert ds.count() == 100 and marker.exists()
    assert ds._stats.ops[0].name == "ReadRange->Map(touch)->MapBatches(<lambda>)"
    assert ds._stats.ops[0].tasks == 4 and len(ds._stats.ops) == 1


def test_limit_stops_early():
    ds = rd.range(4000, override_num_blocks=40).map_batches(
        lambda b: (time.sleep(0.02), b)[1])
    t0 = time.perf_counter()
    assert ds.take(3) == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert time.perf_counter() - t0 < 5
    assert ds.limit(3)._iter_bundles() is not None
    lim = ds.limit(150)
    assert [r["id"] for r in lim.take_all()] == list(range(150))
    assert lim._stats.ops[0].tasks < 40


def test_preserve_order():
    rd.DataContext.get_current().execution_options.preserve_order = True

    def jitter(b):
        time.sleep(0.03 * (int(b["id"][0]) % 3))
        return b
    ds = rd.range(300, override_num_blocks=12).map_batches(jitter)
    assert [r["id"] for r in ds.take_all()] == list(range(300))


class Tagged:
    """Counts its constructions in files named after the actor's pid."""

    def __init__(self, out_dir):
        self.pid = os.getpid()
        with open(os.path.join(out_dir, f"ctor-{self.pid}-{time.monotonic_ns()}"), "w"):
            pass

    def __call__(self, batch):
        return {"id": batch["id"], "pid": np.full(len(batch["id"]), self.pid)}


def test_actor_pool_constructs_once_per_actor(tmp_path):
    ds = rd.range(2000, override_num_blocks=20).map_batches(
        Tagged, fn_constructor_args=(str(tmp_path),), batch_size=50,
        compute=rd.ActorPoolStrategy(size=2), num_cpus=0.5)
    rows = ds.take_all()
    assert sorted(r["id"] for r in rows) == list(range(2000))
    ctor_pids = [int(p.name.split("-")[1]) for p in tmp_path.iterdir()]
    pids = {r["pid"] for r in rows}
    # 40 batches, at most 2 actors, each constructed once (an actor that was
    # still starting when the other finished everything may not have any)
    assert 1 <= len(ctor_pids) <= 2 and len(set(ctor_pids)) == len(ctor_pids)
    assert pids <= set(ctor_pids)
    # concurrency=(min, max) autoscaling: never more actors than max
    for p in tmp_path.iterdir():
        p.unlink()
    rows = rd.range(400, override_num_blocks=8).map_batches(
        Tagged, fn_constructor_args=(str(tmp_path),), concurrency=(1, 2),
        num_cpus=0.5).take_all()
    assert len(rows) == 400 and 1 <= len(list(tmp_path.iterdir())) <= 2


def test_function_concurrency_caps_tasks(tmp_path):
    def track(b):
        path = tmp_path / f"run-{os.getpid()}-{time.monotonic_ns()}"
        path.touch()
        running = len(list(tmp_path.iterdir()))
        time.sleep(0.05)
        path.unlink()
        return {"running": np.array([running])}
    out = rd.range(8, override_num_blocks=8).map_batches(track, concurrency=1,
                                                         batch_size=1).take_all()
    assert [r["running"] for r in out] == [1] * 8


def test_worker_sigkill_mid_pipeline_loses_nothing(tmp_path):
    marker = tmp_path / "killed"

    def die_once(b):
        if 5000 in b["id"] and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return {"id": b["id"] * 3}
    ds = rd.range(10000, override_num_blocks=10).map_batches(die_once)
    got = sorted(r["id"] for r in ds.take_all())
    assert marker.exists()
    assert got == [i * 3 for i in range(10000)]


class DieOnce:
    def __init__(self, marker):
        self.marker = marker

    def __call__(self, b):
        if 50 in b["id"] and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return b


def test_actor_sigkill_mid_pipeline_loses_nothing(tmp_path):
    marker = str(tmp_path / "killed")
    ds = rd.range(200, override_num_blocks=10).map_batches(
        DieOnce, fn_constructor_args=(marker,), concurrency=1, num_cpus=0.5)
    got = sorted(r["id"] for r in ds.take_all())
    assert os.path.exists(marker) and got == list(range(200))


def test_udf_exception_stops_pipeline_promptly_with_its_type():
    def slow_then_fail(b):
        if b["id"][0] == 0:
            raise KeyError("no such thing")
        time.sleep(0.3)
        return b
    ds = rd.range(4000, override_num_blocks=40).map_batches(slow_then_fail)
    t0 = time.perf_counter()
    with pytest.raises(rd.exceptions.UserCodeException) as ei:
        ds.take_all()
    assert time.perf_counter() - t0 < 4        # 40 blocks x 0.3 s / 2 CPUs would be 6 s
    err = ei.value
    assert isinstance(err, pyray.exceptions.RayTaskError) and isinstance(err, KeyError)
    assert "MapBatches(slow_then_fail)" in str(err) and "no such thing" in str(err)


def test_wrong_return_type_fails_naming_operator():
    with pytest.raises(TypeError, match=r"MapBatches\(<lambda>\).*not int"):
        rd.range(10).map_batches(lambda b: 5).take_all()
    with pytest.raises(TypeError, match=r"Map\(<lambda>\).*must return a dict"):
        rd.range(10).map(lambda r: [1]).take_all()
    with pytest.raises(TypeError, match=r"Filter\(<lambda>\).*bool"):
        rd.range(10).filter(lambda r: "yes").take_all()


def test_stats_and_progress(capsys):
    ds = rd.range(1000, override_num_blocks=4).map_batches(lambda b: b)
    ds.take_all()
    s = ds.stats()
    assert "Operator 1 ReadRange->MapBatches(<lambda>): 4 tasks executed" in s
    assert "Remote wall time" in s and "Peak heap memory usage" in s and "1000 rows" in s
    d = ds._get_stats_dict()[0]
    assert d["rows"] == 1000 and d["task_cpu_s"] > 0 and d["peak_rss_bytes"] > 0
    capsys.readouterr()
    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = True
    import pyray.data._internal.progress as progress
    old, progress.SUMMARY_MIN_S = progress.SUMMARY_MIN_S, 0.0
    try:
        rd.range(100).map_batches(lambda b: b).take_all()
    finally:
        progress.SUMMARY_MIN_S = old
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "100 rows" in err[0], err
    ctx.enable_progress_bars = False
    rd.range(100).map_batches(lambda b: b).take_all()
    assert capsys.readouterr().err == ""


@pyray.remote(num_cpus=0)
class Reader:
    def read(self, it):
        return sorted(int(x) for b in it.iter_batches(batch_size=None) for x in b["id"])


def test_streaming_split_concurrent_consumers():
    its = rd.range(1000, override_num_blocks=10).streaming_split(2, equal=True)
    readers = [Reader.remote() for _ in its]
    parts = pyray.get([r.read.remote(it) for r, it in zip(readers, its)], timeout=60)
    assert len(parts[0]) == len(parts[1]) == 500
    assert sorted(parts[0] + parts[1]) == list(range(1000))
    # a second epoch runs the pipeline again
    parts = pyray.get([r.read.remote(it) for r, it in zip(readers, its)], timeout=60)
    assert sorted(parts[0] + parts[1]) == list(range(1000))


class Double:
    def __call__(self, b):
        return {"id": b["id"] * 2}


class SumSink(rd.Datasink):
    def write(self, blocks, ctx):
        return int(sum(int(b.column("id").to_numpy().sum()) for b in blocks))


def test_pool_holding_every_cpu_runs_the_write_too():
    # both CPUs go to the pool; the write runs inside its actors (fused), so
    # the pipeline cannot wait for a CPU that only the pool could give back
    ds = rd.range(1000, override_num_blocks=10).map_batches(Double, concurrency=2,
                                                            num_cpus=1)
    sink = SumSink()
    ds.write_datasink(sink)
    assert ds._stats.ops[-1].name == "ReadRange->MapBatches(Double)->WriteSumSink"
    assert len(ds._stats.ops) == 1


def test_max_errored_blocks_skips_that_many():
    ctx = rd.DataContext.get_current()

    def fail_some(b):
        if b["id"][0] in (200, 700):
            raise ValueError("bad block")
        return b
    ctx.max_errored_blocks = 2
    try:
        ds = rd.range(1000, override_num_blocks=10).map_batches(fail_some)
        got = sorted(r["id"] for r in ds.take_all())
        ctx.max_errored_blocks = 1
        with pytest.raises(ValueError, match="bad block"):
            rd.range(1000, override_num_blocks=10).map_batches(fail_some).take_all()
    finally:
        ctx.max_errored_blocks = 0
    assert got == [i for i in range(1000) if not (200 <= i < 300 or 700 <= i < 800)]


def test_streaming_split_equal_drops_fewer_than_n_rows():
    # uneven blocks: 7 blocks of 1..7 * 10 rows = 280 rows over 3 consumers
    tables = [pa.table({"id": np.arange(sum(range(1, k)) * 10, sum(range(1, k + 1)) * 10)})
              for k in range(1, 8)]
    its = rd.from_arrow(tables).streaming_split(3, equal=True)
    readers = [Reader.remote() for _ in its]
    parts = pyray.get([r.read.remote(it) for r, it in zip(readers, its)], timeout=60)
    assert [len(p) for p in parts] == [93, 93, 93]
    flat = sorted(x for p in parts for x in p)
    assert len(set(flat)) == 279 and set(flat) <= set(range(280))
