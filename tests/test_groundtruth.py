"""Ground-truth CSV reader: joins by cell string, clear errors."""
import os

import numpy as np
import pytest

from fbnas_jax.groundtruth import GroundTruthError, load_ground_truth
from fbnas_jax.spaces import nb201
from fbnas_jax.spaces.cost import nb201_costs

A0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
A1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
A2 = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ABSENT = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def _write(tmp_path, text, name="gt.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture
def good_csv(tmp_path):
    return _write(
        tmp_path,
        "index,arch,acc,note,valid\n"
        f"0,{A0},85.5,first,60\n"
        f"1,{A1},93.66,second,\n"
        "\n"
        f"2,\"{A2}\",10.0,third,12.5\n",
    )


def test_load_good(good_csv):
    gt = load_ground_truth(good_csv)
    assert len(gt) == 3
    assert gt.archs == [A0, A1, A2]
    assert gt.encodings.shape == (3, 6) and gt.encodings.dtype == np.int32
    np.testing.assert_array_equal(gt.encodings[1], nb201.string_to_encoding(A1))
    assert gt.column_names == ["index", "acc", "valid"]  # text column 'note' skipped
    np.testing.assert_array_equal(gt.column("acc"), [85.5, 93.66, 10.0])
    assert gt.column("acc").dtype == np.float64
    valid = gt.column("valid")
    assert valid[0] == 60 and np.isnan(valid[1]) and valid[2] == 12.5
    best = gt.best("acc")
    assert best.row == 1 and best.arch == A1 and best.value == 93.66
    assert gt.best("valid").row == 0  # NaN ignored


def test_select_columns(good_csv):
    gt = load_ground_truth(good_csv, columns=["acc"])
    assert gt.column_names == ["acc"]
    with pytest.raises(GroundTruthError, match="not numeric"):
        load_ground_truth(good_csv, columns=["note"])
    with pytest.raises(GroundTruthError, match="nope"):
        load_ground_truth(good_csv, columns=["nope"])


def test_lookup_and_align(good_csv):
    gt = load_ground_truth(good_csv)
    enc = nb201.parse_archs([A2, ABSENT, A0])
    np.testing.assert_array_equal(gt.lookup(enc), [2, -1, 0])
    np.testing.assert_array_equal(gt.lookup([A2, ABSENT, A0]), [2, -1, 0])
    np.testing.assert_array_equal(gt.lookup(nb201.string_to_encoding(A1)), [1])
    np.testing.assert_array_equal(gt.lookup(A1), [1])
    i_truth, i_query = gt.align([ABSENT, A1, A0, ABSENT])
    np.testing.assert_array_equal(i_truth, [1, 0])
    np.testing.assert_array_equal(i_query, [1, 2])
    i_truth, i_query = gt.align([])
    assert len(i_truth) == len(i_query) == 0
    np.testing.assert_array_equal(gt.values("acc", [A1, ABSENT])[:1], [93.66])
    assert np.isnan(gt.values("acc", [A1, ABSENT])[1])
    with pytest.raises(nb201.SearchSpaceError):
        gt.lookup(["|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"])


def test_unknown_column_lists_available(good_csv):
    gt = load_ground_truth(good_csv)
    with pytest.raises(GroundTruthError) as err:
        gt.column("cifar10_test_200ep")
    msg = str(err.value)
    assert "cifar10_test_200ep" in msg and "acc" in msg and "valid" in msg


def test_missing_arch_column(tmp_path):
    p = _write(tmp_path, f"index,cell,acc\n0,{A0},1.0\n")
    with pytest.raises(GroundTruthError, match="'arch' column"):
        load_ground_truth(p)


def test_malformed_arch_reports_line(tmp_path):
    p = _write(tmp_path, f"arch,acc\n{A0},1.0\n|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|,2.0\n")
    with pytest.raises(GroundTruthError, match=r"line 3.*nor_conv_5x5"):
        load_ground_truth(p)
    p = _write(tmp_path, f"arch,acc\n{A0},1.0\n{A1},2.0\n|none~0|+|none~0|,3.0\n", name="b.csv")
    with pytest.raises(GroundTruthError, match="line 4"):
        load_ground_truth(p)


def test_ragged_row_and_duplicates(tmp_path):
    p = _write(tmp_path, f"arch,acc\n{A0},1.0,7\n")
    with pytest.raises(GroundTruthError, match="line 2"):
        load_ground_truth(p)
    p = _write(tmp_path, f"arch,acc\n{A0},1.0\n{A0},2.0\n", name="dup.csv")
    with pytest.raises(GroundTruthError, match="appears in 2 rows"):
        load_ground_truth(p)


def test_missing_and_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_ground_truth(tmp_path / "absent.csv")
    with pytest.raises(GroundTruthError, match="empty"):
        load_ground_truth(_write(tmp_path, ""))


def test_header_only(tmp_path):
    gt = load_ground_truth(_write(tmp_path, "arch,acc\n"))
    assert len(gt) == 0 and gt.encodings.shape == (0, 6)
    with pytest.raises(GroundTruthError):
        gt.best("acc")


REAL_CSV = os.environ.get("FBNAS_NB201_CSV")


@pytest.mark.skipif(
    not (REAL_CSV and os.path.isfile(REAL_CSV)),
    reason="set FBNAS_NB201_CSV to ../shared/data/nasbench201/nb201_cifar10_accuracy.csv to test the real file",
)
def test_real_nb201_cifar10_csv():
    gt = load_ground_truth(REAL_CSV)
    assert len(gt) == nb201.NUM_ARCHS
    assert len(set(gt.archs)) == nb201.NUM_ARCHS
    rows = gt.lookup(nb201.all_encodings())
    assert (rows >= 0).all() and len(np.unique(rows)) == nb201.NUM_ARCHS
    for name in ("index", "cifar10_test_200ep", "cifar10_valid_val_12ep", "cifar10_test_12ep"):
        assert name in gt.column_names
    best = gt.best("cifar10_test_200ep")
    assert best.value == pytest.approx(94.3733, abs=1e-4)
    index = gt.column("index").astype(int)
    np.testing.assert_array_equal(index, np.arange(nb201.NUM_ARCHS))
    p, f = nb201_costs(gt.encodings)
    expect = {0: (0.129306, 15.64737), 11: (0.802426, 113.95137), 284: (0.101306, 11.71521)}
    for i, (params, flops) in expect.items():
        assert p[i] == pytest.approx(params, abs=1e-5)
        assert f[i] == pytest.approx(flops, abs=1e-5)
    assert gt.archs[0] == A0 and gt.archs[1] == A1
