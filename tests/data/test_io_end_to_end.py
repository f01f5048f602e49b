"""ray.data.read_* / Dataset.write_* end to end on a real local cluster (and one
test on two nodes), results compared with pyarrow / pandas / numpy."""
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import pyray
import pyray as ray

pd = pytest.importorskip("pandas")
NAME_RE = re.compile(r"^[0-9a-f]{32}_(\d{6})_000000\.(parquet|csv|json|npy)$")


@pytest.fixture(scope="module")
def local():
    info = pyray.init(num_cpus=2, object_store_memory=256 << 20)
    yield info
    pyray.shutdown()


def frame(rows):
    return pd.DataFrame(rows)


def written(path, ext):
    names = sorted(os.listdir(path))
    assert names and all(NAME_RE.match(n) and n.endswith("." + ext) for n in names), names
    return [os.path.join(path, n) for n in names]


def test_parquet_partitioned_columns_filter_then_write_and_read_back(tmp_path, local):
    src = tmp_path / "src"
    for y in (2023, 2024):
        for part in range(3):
            d = src / f"year={y}"
            d.mkdir(parents=True, exist_ok=True)
            n = 50
            pq.write_table(pa.table({"id": np.arange(n) + part * n + (y - 2023) * 1000,
                                     "v": np.random.rand(n)}), d / f"p{part}.parquet")
    ds = ray.data.read_parquet(str(src), columns=["id", "v", "year"],
                               filter=(pads.field("year") == "2024") & (pads.field("id") < 1100))
    want = pads.dataset(str(src), format="parquet", partitioning=pads.partitioning(
        pa.schema([("year", pa.string())]), flavor="hive")).to_table(
        filter=(pads.field("year") == "2024") & (pads.field("id") < 1100)).to_pandas()
    got = pd.DataFrame(ds.take_all())
    assert sorted(got.columns) == ["id", "v", "year"]
    pd.testing.assert_frame_equal(got.sort_values("id").reset_index(drop=True),
                                  want[got.columns].sort_values("id").reset_index(drop=True))

    out = tmp_path / "out"
    ds.map_batches(lambda b: {"id": b["id"], "v2": b["v"] * 2}).write_parquet(str(out))
    written(out, "parquet")
    back = pq.read_table(str(out)).to_pandas()
    assert sorted(back["id"]) == sorted(want["id"])
    np.testing.assert_allclose(back.sort_values("id")["v2"].to_numpy(),
                               want.sort_values("id")["v"].to_numpy() * 2)
    assert ray.data.read_parquet(str(out)).count() == len(want)


def test_csv_json_numpy_round_trips(tmp_path, local):
    rows = [{"a": i, "b": f"s{i}", "c": i * 0.5} for i in range(100)]
    ds = ray.data.from_items(rows)
    ds.write_csv(str(tmp_path / "csv"))
    ds.write_json(str(tmp_path / "json"))
    want = frame(rows)
    for ext, read, plain in (("csv", ray.data.read_csv, pd.read_csv),
                             ("json", ray.data.read_json,
                              lambda f: pd.read_json(f, lines=True))):
        files = written(tmp_path / ext, ext)
        via_pandas = pd.concat([plain(f) for f in files]).sort_values("a")
        via_ray = frame(read(str(tmp_path / ext)).take_all()).sort_values("a")
        for got in (via_pandas, via_ray):
            pd.testing.assert_frame_equal(got[want.columns].reset_index(drop=True), want)

    arr = np.arange(60, dtype=np.float64).reshape(20, 3)
    ray.data.from_numpy(arr).write_numpy(str(tmp_path / "npy"), column="data")
    files = written(tmp_path / "npy", "npy")
    np.testing.assert_array_equal(np.concatenate([np.load(f) for f in files]), arr)
    back = ray.data.read_numpy(str(tmp_path / "npy"))
    got = np.concatenate([b["data"] for b in back.iter_batches(batch_size=None)])
    np.testing.assert_array_equal(got[np.argsort(got[:, 0])], arr)


def test_images_binary_text(tmp_path, local):
    Image = pytest.importorskip("PIL.Image")
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    want = {}
    for i in range(4):
        a = np.full((5, 7, 3), i * 30, dtype=np.uint8)
        Image.fromarray(a).save(img_dir / f"{i}.png")
        want[str(img_dir / f"{i}.png")] = a
    rows = ray.data.read_images(str(img_dir), include_paths=True).take_all()
    assert len(rows) == 4
    for r in rows:
        np.testing.assert_array_equal(r["image"], want[r["path"]])
    gray = ray.data.read_images(str(img_dir), size=(2, 3), mode="L").take_all()
    assert {r["image"].shape for r in gray} == {(2, 3)}

    (tmp_path / "t.txt").write_text("alpha\nbeta\n\ngamma\n")
    assert [r["text"] for r in ray.data.read_text(str(tmp_path / "t.txt")).take_all()] == \
        ["alpha", "beta", "gamma"]
    got = ray.data.read_binary_files(str(tmp_path / "t.txt"), include_paths=True).take_all()
    assert got == [{"bytes": b"alpha\nbeta\n\ngamma\n", "path": str(tmp_path / "t.txt")}]


def test_bad_input_fails_at_once_naming_file_or_column(tmp_path, local):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        ray.data.read_parquet(str(tmp_path / "missing_dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No input files found"):
        ray.data.read_csv(str(tmp_path / "empty"))
    d = tmp_path / "mixed"
    d.mkdir()
    pq.write_table(pa.table({"k": [1, 2]}), d / "a.parquet")
    pq.write_table(pa.table({"k": ["x"]}), d / "b.parquet")
    with pytest.raises(ValueError, match="column 'nope' does not exist"):
        ray.data.read_parquet(str(d), columns=["nope"])
    with pytest.raises(Exception, match=r"schema mismatch: column 'k' .*a\.parquet.*b\.parquet"):
        ray.data.read_parquet(str(d)).take_all()
    (d / "c.csv").write_text('x,y\n1,2\n3,4,5\n')
    with pytest.raises(Exception, match="c.csv"):
        ray.data.read_csv(str(d / "c.csv")).take_all()
    with pytest.raises(TypeError, match="not_an_option"):
        ray.data.read_parquet(str(d), not_an_option=1)


def test_failed_write_removes_its_files(tmp_path, local):
    def explode(batch):
        if batch["id"].max() >= 90:
            raise RuntimeError("bad batch")
        return batch

    out = tmp_path / "out"
    ds = ray.data.range(100, override_num_blocks=10).map_batches(explode)
    with pytest.raises(Exception, match="bad batch"):
        ds.write_parquet(str(out))
    assert not out.exists() or not [f for _, _, fs in os.walk(out) for f in fs]


def test_tensors_min_rows_per_file_and_partition_cols(tmp_path, local):
    ds = ray.data.range_tensor(50, shape=(2, 3), override_num_blocks=5)
    ds.write_parquet(str(tmp_path / "ten"), min_rows_per_file=20)
    files = written(tmp_path / "ten", "parquet")
    assert sorted(pq.read_metadata(f).num_rows for f in files) == [10, 20, 20]
    back = ray.data.read_parquet(str(tmp_path / "ten"))
    got = np.concatenate([b["data"] for b in back.iter_batches(batch_size=16)])
    assert got.shape == (50, 2, 3)
    np.testing.assert_array_equal(got[np.argsort(got[:, 0, 0])],
                                  np.broadcast_to(np.arange(50)[:, None, None], (50, 2, 3)))

    ray.data.from_items([{"id": i, "k": i % 3} for i in range(30)]).write_parquet(
        str(tmp_path / "parts"), partition_cols=["k"])
    assert sorted(os.listdir(tmp_path / "parts")) == ["k=0", "k=1", "k=2"]
    rows = ray.data.read_parquet(str(tmp_path / "parts")).take_all()
    assert sorted((r["id"], r["k"]) for r in rows) == [(i, str(i % 3)) for i in range(30)]
