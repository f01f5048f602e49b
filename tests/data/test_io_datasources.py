"""File datasources and datasinks, driven directly: ReadTasks called in this
process and inside pyray tasks, Datasink.write inside pyray tasks; every
result compared with pyarrow / pandas / numpy / Pillow reading the same files."""
import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import pyray
from pyray.data.context import DataContext
from pyray.data.datasource import Partitioning, PathPartitionFilter
from pyray.data.datasource.datasink import TaskContext, WriteResult
from pyray.data.datasource.file_datasink import (CSVDatasink, JSONDatasink, NumpyDatasink,
                                                 ParquetDatasink)
from pyray.data.datasource.file_datasources import (BinaryDatasource, CSVDatasource,
                                                    ImageDatasource, JSONDatasource,
                                                    NumpyDatasource, TextDatasource)
from pyray.data.datasource.parquet_datasource import ParquetDatasource

NAME_RE = re.compile(r"^[0-9a-f]{32}_(\d{6})_(\d{6})\.(parquet|csv|json|npy)$")


@pytest.fixture(scope="module")
def cluster():
    info = pyray.init(num_cpus=2, object_store_memory=256 << 20)
    yield info
    pyray.shutdown()


@pyray.remote
def run_read_task(task):
    """Runs a ReadTask in a worker; returns its blocks and the worker's pid."""
    return [t for t in task()], os.getpid()


@pyray.remote
def run_write(sink, tables, task_idx):
    return sink.write(tables, TaskContext(task_idx)), os.getpid()


def read_all(datasource, parallelism=4):
    tables = [t for task in datasource.get_read_tasks(parallelism) for t in task()]
    return pa.concat_tables(tables) if tables else None


def sort_rows(table, key):
    return table.sort_by(key).to_pydict()


@pytest.fixture
def hive(tmp_path):
    """year=Y/m=M/part.parquet, 4 folders of 5 rows."""
    root = tmp_path / "hive"
    for y in (2023, 2024):
        for m in (1, 2):
            d = root / f"year={y}" / f"m={m}"
            d.mkdir(parents=True)
            pq.write_table(pa.table({"a": np.arange(5) + y * 100 + m * 10,
                                     "b": [f"s{i}" for i in range(5)]}), d / "part.parquet")
    return root


def test_parquet_partitioned_matches_pyarrow(hive):
    got = read_all(ParquetDatasource(str(hive)))
    want = pads.dataset(str(hive), format="parquet",
                        partitioning=pads.partitioning(flavor="hive",
                                                       schema=pa.schema([("year", pa.string()),
                                                                         ("m", pa.string())]))
                        ).to_table()
    assert got.column_names == ["a", "b", "year", "m"]
    assert sort_rows(got, "a") == sort_rows(want.select(got.column_names), "a")


def test_parquet_columns_filter_and_partition_filter(hive):
    got = read_all(ParquetDatasource(str(hive), columns=["a", "year"],
                                     filter=(pads.field("year") == "2024") &
                                            (pads.field("a") > 2410)))
    want = [int(a) for y in (2024,) for m in (1, 2) for a in np.arange(5) + y * 100 + m * 10
            if a > 2410]
    assert got.column_names == ["a", "year"]
    assert sorted(got["a"].to_pylist()) == sorted(want)
    assert set(got["year"].to_pylist()) == {"2024"}

    only_m2 = ParquetDatasource(str(hive), include_paths=True,
                                partition_filter=PathPartitionFilter.of(
                                    lambda v: v["m"] == 2, field_types={"m": int}))
    assert all("/m=2/" in p for p in only_m2.file_paths) and len(only_m2.file_paths) == 2
    got = read_all(only_m2)
    assert set(got["m"].to_pylist()) == {"2"}
    assert set(got["path"].to_pylist()) == set(only_m2.file_paths)

    typed = read_all(ParquetDatasource(str(hive), partitioning=Partitioning(
        "hive", field_types={"year": int})))
    assert typed.schema.field("year").type == pa.int64()
    assert read_all(ParquetDatasource(str(hive), partitioning=None)).column_names == ["a", "b"]


def test_parquet_many_small_files_grouped_by_size_read_in_workers(tmp_path, cluster):
    d = tmp_path / "many"
    d.mkdir()
    sizes = []
    for i in range(60):
        n = 10 if i % 2 else 400          # two sizes: grouping must balance bytes, not count
        pq.write_table(pa.table({"i": np.full(n, i), "x": np.random.rand(n)}),
                       d / f"f{i:03}.parquet")
        sizes.append(os.path.getsize(d / f"f{i:03}.parquet"))
    (d / "_SUCCESS").write_text("")        # skipped, as Ray skips _ and . names
    src = ParquetDatasource(str(d))
    tasks = src.get_read_tasks(6)
    assert len(tasks) == 6
    files = [f for t in tasks for f in t.metadata.input_files]
    assert files == sorted(str(p) for p in d.glob("*.parquet"))   # each file once, in order
    per_task = [t.metadata.size_bytes for t in tasks]
    assert max(per_task) < 2 * (sum(per_task) / 6)
    results = pyray.get([run_read_task.remote(t) for t in tasks], timeout=60)
    got = pa.concat_tables([b for blocks, _ in results for b in blocks])
    want = pq.read_table(str(d))
    assert sort_rows(got, [("i", "ascending"), ("x", "ascending")]) == \
        sort_rows(want, [("i", "ascending"), ("x", "ascending")])
    assert {pid for _, pid in results} != {os.getpid()}
    # one block per task: the small files of a task are merged
    assert all(len(blocks) == 1 for blocks, _ in results)
    # no parallelism asked for: tasks of at least about target_min_block_size
    assert len(src.get_read_tasks(-1)) == 1
    orders = {tuple(f for t in ParquetDatasource(str(d), shuffle="files").get_read_tasks(60)
                    for f in t.metadata.input_files) for _ in range(3)}
    assert len(orders) > 1 and all(sorted(o) == files for o in orders)


def test_big_file_split_into_blocks_under_target(tmp_path):
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"a": np.arange(400_000)}), path, row_group_size=50_000)
    ctx = DataContext.get_current()
    old = ctx.target_max_block_size
    ctx.target_max_block_size = 400_000
    try:
        one_task = ParquetDatasource(str(path)).get_read_tasks(1)
        by_row_groups = ParquetDatasource(str(path)).get_read_tasks(4)
        csv_path = tmp_path / "big.csv"
        pacsv.write_csv(pa.table({"a": np.arange(200_000)}), csv_path)
        csv_tasks = CSVDatasource(str(csv_path)).get_read_tasks(8)
    finally:
        ctx.target_max_block_size = old
    assert len(one_task) == 1 and one_task[0].metadata.input_files == [str(path)]
    blocks = list(one_task[0]())
    assert len(blocks) >= 8 and max(b.nbytes for b in blocks) <= 400_000
    assert pa.concat_tables(blocks)["a"].to_pylist() == list(range(400_000))
    # fewer files than tasks: the file's 8 row groups are shared by 4 tasks
    assert len(by_row_groups) == 4
    assert all(t.metadata.input_files == [str(path)] for t in by_row_groups)
    pieces = [pa.concat_tables(list(t())) for t in by_row_groups]
    assert [p.num_rows for p in pieces] == [100_000] * 4
    assert pa.concat_tables(pieces)["a"].to_pylist() == list(range(400_000))
    csv_blocks = list(csv_tasks[0]())
    assert len(csv_blocks) >= 4 and max(b.nbytes for b in csv_blocks) <= 400_000
    assert pa.concat_tables(csv_blocks)["a"].to_pylist() == list(range(200_000))


def test_csv_json_numpy_text_binary_match_plain_readers(tmp_path, cluster):
    pd = pytest.importorskip("pandas")
    d = tmp_path / "files"
    d.mkdir()
    df1 = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    df2 = pd.DataFrame({"x": [4, 5], "y": ["d", "e"]})
    df1.to_csv(d / "1.csv", index=False)
    df2.to_csv(d / "2.csv", index=False)
    tasks = CSVDatasource(str(d)).get_read_tasks(2)
    got = pa.concat_tables([b for bl, _ in pyray.get([run_read_task.remote(t) for t in tasks],
                                                     timeout=60) for b in bl])
    pd.testing.assert_frame_equal(got.to_pandas(), pd.concat([df1, df2], ignore_index=True))

    (d / "a.jsonl").write_text('{"k": 1, "v": "p"}\n{"k": 2, "v": "q"}\n')
    (d / "b.json").write_text(json.dumps([{"k": 3, "v": "r"}, {"k": 4, "v": "s"}], indent=2))
    got = read_all(JSONDatasource(str(d), file_extensions=JSONDatasource._FILE_EXTENSIONS))
    want = pd.concat([pd.read_json(d / "a.jsonl", lines=True), pd.read_json(d / "b.json")],
                     ignore_index=True)
    pd.testing.assert_frame_equal(got.to_pandas(), want)
    with pytest.raises(Exception, match="b.json"):               # not JSON lines
        read_all(JSONDatasource(str(d / "b.json"), lines=True))
    (d / "one.json").write_text('{"k": 5,\n "v": "t"}')
    assert read_all(JSONDatasource(str(d / "one.json"), lines=False)).to_pylist() == \
        [{"k": 5, "v": "t"}]

    arr = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    np.save(d / "t.npy", arr)
    np.save(d / "v.npy", np.arange(5))
    got = read_all(NumpyDatasource(str(d / "t.npy")))
    assert got.column_names == ["data"]
    np.testing.assert_array_equal(got["data"].combine_chunks().to_numpy_ndarray(), arr)
    assert read_all(NumpyDatasource(str(d / "v.npy")))["data"].to_pylist() == list(range(5))

    (d / "t.txt").write_text("first\n\nsecond line\nthird")
    assert read_all(TextDatasource(str(d / "t.txt")))["text"].to_pylist() == \
        ["first", "second line", "third"]
    assert read_all(TextDatasource(str(d / "t.txt"), drop_empty_lines=False))[
        "text"].to_pylist() == ["first", "", "second line", "third"]

    blobs = {d / "x.bin": os.urandom(100), d / "y.bin": b""}
    for p, b in blobs.items():
        p.write_bytes(b)
    got = read_all(BinaryDatasource([str(p) for p in blobs], include_paths=True))
    assert dict(zip(got["path"].to_pylist(), got["bytes"].to_pylist())) == \
        {str(p): b for p, b in blobs.items()}


def test_images_decoded_resized_converted(tmp_path, cluster):
    Image = pytest.importorskip("PIL.Image")
    d = tmp_path / "img"
    d.mkdir()
    want = {}
    for i in range(3):
        a = (np.arange(6 * 8 * 3).reshape(6, 8, 3) * (i + 1) % 255).astype(np.uint8)
        Image.fromarray(a).save(d / f"{i}.png")
        want[str(d / f"{i}.png")] = a
    (d / "notes.txt").write_text("not an image")   # skipped by the extension filter
    src = ImageDatasource(str(d), include_paths=True)
    assert sorted(src.file_paths) == sorted(want)
    blocks, _ = pyray.get(run_read_task.remote(src.get_read_tasks(1)[0]), timeout=60)
    got = pa.concat_tables(blocks)
    images = got["image"].combine_chunks().to_numpy_ndarray()
    assert images.shape == (3, 6, 8, 3)
    for path, img in zip(got["path"].to_pylist(), images):
        np.testing.assert_array_equal(img, want[path])
    small = read_all(ImageDatasource(str(d), size=(3, 4), mode="L"))
    arr = small["image"].combine_chunks().to_numpy_ndarray()
    assert arr.shape == (3, 3, 4)
    ref = np.asarray(Image.open(d / "0.png").convert("L").resize((4, 3), Image.BILINEAR))
    np.testing.assert_array_equal(arr[0], ref)


def test_bad_input_names_the_file_or_column(tmp_path, cluster):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ParquetDatasource(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No input files found"):
        CSVDatasource(str(tmp_path / "empty"))

    d = tmp_path / "mixed"
    d.mkdir()
    pq.write_table(pa.table({"a": [1, 2], "b": [1.0, 2.0]}), d / "1.parquet")
    pq.write_table(pa.table({"a": ["x", "y"], "b": [3.0, 4.0]}), d / "2.parquet")
    with pytest.raises(ValueError, match="column 'zz' does not exist"):
        ParquetDatasource(str(d), columns=["a", "zz"])
    tasks = ParquetDatasource(str(d)).get_read_tasks(2)
    with pytest.raises(Exception) as err:            # raised in the worker reading 2.parquet
        pyray.get([run_read_task.remote(t) for t in tasks], timeout=60)
    msg = str(err.value)
    assert "1.parquet" in msg and "2.parquet" in msg and "'a'" in msg
    # the other column alone reads fine
    assert read_all(ParquetDatasource(str(d), columns=["b"]))["b"].to_pylist() == \
        [1.0, 2.0, 3.0, 4.0]

    # a narrower integer type next to the first file's reads as the first file's type
    w = tmp_path / "wide"
    w.mkdir()
    pq.write_table(pa.table({"a": pa.array([1], pa.int64())}), w / "1.parquet")
    pq.write_table(pa.table({"a": pa.array([2], pa.int32())}), w / "2.parquet")
    widened = read_all(ParquetDatasource(str(w)))
    assert widened.schema.field("a").type == pa.int64() and widened["a"].to_pylist() == [1, 2]
    assert ParquetDatasource([str(w / "1.parquet"), str(tmp_path / "gone.parquet")],
                             ignore_missing_paths=True).file_paths == [str(w / "1.parquet")]

    (d / "3.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(Exception, match="3.parquet"):
        read_all(ParquetDatasource(str(d / "3.parquet")))
    c = tmp_path / "csvs"
    c.mkdir()
    (c / "1.csv").write_text("x,y\n1,2\n")
    (c / "2.csv").write_text("x,z\n3,4\n")
    with pytest.raises(ValueError, match=r"column 'y' is in .*1\.csv but not in .*2\.csv"):
        read_all(CSVDatasource(str(c)))
    (c / "bad.json").write_text('{"a": 1}\n{"a": ')
    with pytest.raises(Exception, match="bad.json"):
        read_all(JSONDatasource(str(c / "bad.json")))
    with pytest.raises(ValueError, match="shuffle"):
        CSVDatasource(str(c), shuffle="rows")


def test_path_schemes(tmp_path):
    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "one.parquet")
    for p in (f"file://{tmp_path}/one.parquet", f"local://{tmp_path}/one.parquet"):
        src = ParquetDatasource(p)
        assert read_all(src)["a"].to_pylist() == [1, 2, 3]
        assert src.supports_distributed_reads == (not p.startswith("local://"))
    import pyarrow.fs as pafs
    sub = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    assert read_all(ParquetDatasource("one.parquet", filesystem=sub))["a"].to_pylist() == \
        [1, 2, 3]


def test_sinks_write_one_file_per_task_named_as_ray(tmp_path, cluster):
    pd = pytest.importorskip("pandas")
    table = pa.table({"a": np.arange(20), "k": ["x", "y"] * 10, "f": np.linspace(0, 1, 20)})
    parts = [table.slice(0, 7), table.slice(7, 6), table.slice(13)]
    sinks = {"parquet": ParquetDatasink(str(tmp_path / "pq")),
             "csv": CSVDatasink(str(tmp_path / "csv")),
             "json": JSONDatasink(str(tmp_path / "json")),
             "npy": NumpyDatasink(str(tmp_path / "npy"), column="a")}
    for ext, sink in sinks.items():
        sink.on_write_start()
        # task 0 writes two blocks (one file), task 1 one block
        out = pyray.get([run_write.remote(sink, parts[:2], 0),
                         run_write.remote(sink, parts[2:], 1)], timeout=60)
        sink.on_write_complete(WriteResult(20, table.nbytes, [o for o, _ in out]))
        names = sorted(os.listdir(sink.path))
        assert len(names) == 2, names
        for task_idx, name in enumerate(names):
            m = NAME_RE.match(name)
            assert m and m.group(3) == ext and int(m.group(1)) == task_idx \
                and m.group(2) == "000000", name
            assert name.startswith(sink.dataset_uuid)
        files = [os.path.join(sink.path, n) for n in names]
        if ext == "parquet":
            got = pa.concat_tables([pq.read_table(f) for f in files])
            assert got.equals(table)
            # strings dictionary-encoded, floats not (the encoder only wastes time on them)
            rg = pq.ParquetFile(files[0]).metadata.row_group(0)
            dict_cols = {rg.column(i).path_in_schema for i in range(rg.num_columns)
                         if any("DICTIONARY" in e for e in rg.column(i).encodings)}
            assert dict_cols == {"a", "k"}
        elif ext == "csv":
            got = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
            pd.testing.assert_frame_equal(got, table.to_pandas())
        elif ext == "json":
            got = pd.concat([pd.read_json(f, lines=True) for f in files], ignore_index=True)
            pd.testing.assert_frame_equal(got, table.to_pandas())
        else:
            got = np.concatenate([np.load(f) for f in files])
            np.testing.assert_array_equal(got, np.arange(20))

    sink = ParquetDatasink(str(tmp_path / "parted"), partition_cols=["k"])
    sink.on_write_start()
    sink.write([table], TaskContext(0))
    back = pads.dataset(str(tmp_path / "parted"), format="parquet",
                        partitioning="hive").to_table()
    assert sorted(os.listdir(tmp_path / "parted")) == ["k=x", "k=y"]
    assert sort_rows(back.select(["a", "k", "f"]), "a") == sort_rows(table, "a")


def test_failed_write_leaves_nothing_presented_as_complete(tmp_path, cluster):
    out = tmp_path / "out"
    sink = CSVDatasink(str(out))
    sink.on_write_start()
    good = pa.table({"a": [1, 2]})
    tensor = pa.table({"t": pa.FixedShapeTensorArray.from_numpy_ndarray(np.ones((2, 2, 2)))})
    ok, _ = pyray.get(run_write.remote(sink, [good], 0), timeout=60)
    assert len(ok) == 1 and os.path.exists(ok[0])
    with pytest.raises(Exception):                     # CSV cannot hold a tensor column
        pyray.get(run_write.remote(sink, [tensor], 1), timeout=60)
    assert os.listdir(out) == [os.path.basename(ok[0])]   # no half file, no temp file
    sink.on_write_failed(RuntimeError("task 1 failed"))
    assert not out.exists()                            # this write's files and its dir gone

    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "other.csv").write_text("a\n1\n")
    sink = CSVDatasink(str(keep))
    sink.on_write_start()
    sink.write([good], TaskContext(0))
    sink.on_write_failed(RuntimeError("boom"))
    assert os.listdir(keep) == ["other.csv"]           # only this write's files removed

    with pytest.raises(TypeError, match="compresion"):     # misspelt: caught before writing
        ParquetDatasink(str(tmp_path / "p"), arrow_parquet_args={"compresion": "zstd"})
    with pytest.raises(TypeError, match="orientation"):
        JSONDatasink(str(tmp_path / "j"), pandas_json_args={"orientation": "records"})
    with pytest.raises(FileNotFoundError, match="try_create_dir"):
        CSVDatasink(str(tmp_path / "absent"), try_create_dir=False).on_write_start()
    with pytest.raises(ValueError, match="column 'nope' does not exist"):
        NumpyDatasink(str(tmp_path / "np"), column="nope").write([good], TaskContext(0))
    assert not [n for n in os.listdir(tmp_path / "np")]
