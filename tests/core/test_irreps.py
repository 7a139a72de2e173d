"""fastso3.core.irreps against e3nn 0.6.0 (torch) and against the grammar and semantics it documents."""

import copy
import inspect
import itertools
import pickle
import re

import pytest
import torch
from e3nn import o3 as e3
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastso3.core.irreps import Irrep, Irreps, MulIr

pytestmark = pytest.mark.e3nn

VALID = [
    "",
    "   ",
    "0e",
    "1e",
    "1o",
    "10x0e + 3x1o",
    " 2x1e+ 3x0o ",
    "0x2e",
    "0x0e",
    "1e+1e+0e",
    "1e+0x0e+1e",
    "2o+1e+0e+1e",
    "3x0o+2x0e+1x0o+5x2e+0x1o+4x1e+1x3y",
    "2y+3y+0y+1y",
    "128x0e+64x1o+32x2e+16x3o",
    "1x1e+1x1e",
    "5x1o+3x1o+2x2e+7x0e+1x0o",
    "2 x 1e + 1 e",
    "007x02e",
    "1x11o+3x0e",
]

BAD = ["1x", "-1e", "2q", "x1e", "0x", "1.5e", "2x-1e", "1e+", "+1e", "1e++2e", "1ee", "1E", "1", "e", "1x1",
       "2x3x1e", "1e 2e", "1 0e", "x", "+", "1o,2e", "1e-2e", "٣e"]  # the last is an Arabic-Indic digit


def same(mine, theirs):
    """Equal as tuples and with the same repr."""
    return tuple(mine) == tuple(theirs) and repr(mine) == repr(theirs)


# ---------------------------------------------------------------------------------------------
# Irrep
# ---------------------------------------------------------------------------------------------


def test_irrep_forms():
    for form in [(2, -1), ("2o",), ((2, -1),), (Irrep(2, -1),), ("3y",), (" 2o ",), ([2, -1],)]:
        ir = Irrep(*form)
        expected = (3, -1) if form == ("3y",) else (2, -1)
        assert ir == expected and type(ir) is Irrep
        assert (ir.l, ir.p) == expected
        assert isinstance(ir.l, int) and isinstance(ir.p, int)
    assert Irrep("0y") == (0, 1) and Irrep("1y") == (1, -1) and Irrep("2y") == (2, 1)
    ir = Irrep("1e")
    assert Irrep(ir) is ir
    assert Irrep("1e") == Irrep(1, 1) == (1, 1) == e3.Irrep("1e")
    assert hash(Irrep("1e")) == hash((1, 1)) == hash(e3.Irrep("1e"))
    assert Irrep("1e") != Irrep("1o") and Irrep("1e") != (1, -1)
    assert Irrep("1e") == "1e" and Irrep("1e") != "1o" and not (Irrep("1e") != "1e")
    assert Irrep("1e") != "garbage"
    assert len({Irrep("1e"), Irrep(1, 1), Irrep("1o")}) == 2
    assert Irrep("1o") < Irrep("1e") < Irrep("2o")  # tuple order
    assert sorted([Irrep("1e"), Irrep("0e"), Irrep("1o"), Irrep("0o")]) == [(0, -1), (0, 1), (1, -1), (1, 1)]


@pytest.mark.parametrize("l", range(6))
@pytest.mark.parametrize("p", [1, -1])
def test_irrep_attributes_match_e3nn(l, p):
    mine, theirs = Irrep(l, p), e3.Irrep(l, p)
    assert repr(mine) == repr(theirs) == str(mine) == f"{l}{'e' if p == 1 else 'o'}"
    assert mine.dim == theirs.dim == 2 * l + 1
    assert mine.is_scalar() == (l == 0 and p == 1)
    assert Irrep(repr(mine)) == mine


@pytest.mark.parametrize(
    "bad", [(1, 0), (-1, 1), (1.5, 1), (True, 1), ("2x1e",), ("1",), ("",), ("e",), ((1, 2, 3),),
            (3,), ("1e", 1), ((1, 1), 1), (None,), (MulIr(3, "1o"),)]
)
def test_irrep_invalid(bad):
    with pytest.raises(ValueError):
        Irrep(*bad)


def test_irrep_invalid_messages():
    with pytest.raises(ValueError, match=re.escape("'2q'")):
        Irrep("2q")
    with pytest.raises(ValueError, match="parity"):
        Irrep(1, 0)
    with pytest.raises(ValueError, match="non-negative"):
        Irrep(-1, 1)


@pytest.mark.parametrize("ir1", ["0e", "0o", "1o", "1e", "2e", "3o", "4e"])
@pytest.mark.parametrize("ir2", ["0e", "1o", "1e", "2o", "3e"])
def test_irrep_product_matches_e3nn(ir1, ir2):
    mine = Irrep(ir1) * Irrep(ir2)
    assert inspect.isgenerator(mine)
    mine = list(mine)
    assert mine == list(e3.Irrep(ir1) * e3.Irrep(ir2))
    assert all(type(ir) is Irrep for ir in mine)
    assert list(Irrep(ir1) * ir2) == mine  # string right operand


def test_irrep_int_multiplication_and_addition():
    for n in [0, 1, 3]:
        assert same(n * Irrep("1o"), n * e3.Irrep("1o"))
        assert same(Irrep("1o") * n, n * e3.Irrep("1o"))
        assert type(n * Irrep("1o")) is Irreps
    with pytest.raises(ValueError):
        -1 * Irrep("1o")
    with pytest.raises(TypeError):
        1.5 * Irrep("1o")
    assert same(Irrep("1e") + Irrep("0e"), e3.Irrep("1e") + e3.Irrep("0e"))
    assert same(Irrep("1e") + "2x0o", e3.Irrep("1e") + "2x0o")
    assert Irrep("1e") + Irreps("2x0o+1o") == "1e+2x0o+1o"
    assert "2x0o" + Irrep("1e") == "2x0o+1x1e"


def test_irrep_iterator_matches_e3nn():
    for lmax in [0, 1, 4]:
        assert list(Irrep.iterator(lmax)) == list(e3.Irrep.iterator(lmax))
    assert list(Irrep.iterator(1)) == ["0e", "0o", "1o", "1e"]
    first = list(itertools.islice(Irrep.iterator(), 30))
    assert first == list(itertools.islice(e3.Irrep.iterator(), 30))
    assert len(set(first)) == 30


def test_pickle_copy_hash():
    x = Irreps("2x0e+3x1o+0x2e")
    for obj in [x, x[0], Irrep("2o")]:
        for clone in [pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj), copy.copy(obj)]:
            assert clone == obj and type(clone) is type(obj) and hash(clone) == hash(obj)
    assert hash(Irreps("1e+0o")) == hash(Irreps([(1, (1, 1)), (1, (0, -1))])) == hash(e3.Irreps("1e+0o"))
    assert {Irreps("1e"): 1}[Irreps("1x1e")] == 1
    assert not hasattr(Irrep("1e"), "__dict__") and not hasattr(x, "__dict__")


# ---------------------------------------------------------------------------------------------
# MulIr
# ---------------------------------------------------------------------------------------------


def test_mulir():
    m = MulIr(3, "1o")
    assert m == (3, (1, -1)) and m.mul == 3 and m.ir == Irrep("1o") and type(m.ir) is Irrep and m.dim == 9
    assert repr(m) == str(m) == "3x1o"
    mul, ir = m
    assert (mul, ir) == (3, (1, -1))
    assert MulIr((3, "1o")) == m and MulIr(m) is m and MulIr(0, (2, 1)).dim == 0
    assert m._replace(mul=5) == (5, (1, -1))
    assert Irreps("3x1o")[0] == m == e3.Irreps("3x1o")[0]
    for bad in [(-1, "1o"), (1.0, "1o"), (1, "1q"), (1, (1, 0))]:
        with pytest.raises(ValueError):
            MulIr(*bad)


# ---------------------------------------------------------------------------------------------
# Irreps against e3nn
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", VALID)
def test_irreps_matches_e3nn(s):
    x, y = Irreps(s), e3.Irreps(s)
    assert type(x) is Irreps
    assert same(x, y)
    assert str(x) == repr(y)
    assert all(type(m) is MulIr and type(m.ir) is Irrep for m in x)
    assert x.dim == y.dim and x.num_irreps == y.num_irreps and x.ls == y.ls and len(x) == len(y)
    assert x.slices() == y.slices()
    if y.ls:
        assert x.lmax == y.lmax
    else:
        with pytest.raises(ValueError):
            x.lmax
    for ir in Irrep.iterator(3):
        assert x.count(ir) == y.count(ir)
        assert x.count(repr(ir)) == y.count(ir)
        assert (ir in x) == (ir in y) == (repr(ir) in x)
    assert same(x.simplify(), y.simplify())
    assert same(x.remove_zero_multiplicities(), y.remove_zero_multiplicities())
    assert same(x.regroup(), y.regroup())
    xs, ys = x.sort(), y.sort()
    assert same(xs.irreps, ys.irreps) and xs.p == ys.p and xs.inv == ys.inv
    assert xs == (xs.irreps, xs.p, xs.inv) and type(xs.irreps) is Irreps
    # round trip and interoperability with e3nn objects
    assert Irreps(repr(x)) == x and Irreps(y) == x and e3.Irreps(x) == y
    assert x == y and hash(x) == hash(y)
    assert x == repr(y) and not (x != repr(y))


def test_irreps_documented_examples():
    assert Irreps("1e+1e+0e").simplify() == "2x1e+1x0e"
    assert Irreps("1e+0x0e+1e").simplify() == "2x1e"
    assert repr(Irreps("0x1e").simplify()) == ""
    s = Irreps("2o+1e+0e+1e").sort()
    assert s.p == (3, 1, 0, 2) and s.inv == (2, 1, 3, 0) and s.irreps == "0e+1e+1e+2o"
    assert Irreps("1o+0e+0o+1e").sort().irreps == "0o+0e+1o+1e"  # torch order: (l, p) as a tuple
    assert Irreps("10x0e + 3x1o").dim == 19 and repr(Irreps("10x0e + 3x1o")) == "10x0e+3x1o"
    assert repr(Irreps("")) == "" and len(Irreps("")) == 0 and Irreps("").dim == 0
    assert Irreps("2x0e+3x1o").slice_by_mul[1:4] == "1x0e+2x1o"
    assert Irreps("1e+2e").ls == [1, 2] and Irreps("2x1e").ls == [1, 1]
    assert Irreps("2x0e+3x1o").slices() == [slice(0, 2), slice(2, 11)]


@pytest.mark.parametrize(
    "mine, theirs",
    [
        (None, None),
        (Irrep("2e"), e3.Irrep("2e")),
        (e3.Irrep("2e"), e3.Irrep("2e")),
        (MulIr(3, "1o"), [(3, "1o")]),
        ([(2, "1e"), "0e", Irrep("1o"), (3, (1, 1))], [(2, "1e"), "0e", e3.Irrep("1o"), (3, (1, 1))]),
        ([MulIr(2, "1e"), (0, Irrep("3o"))], [(2, "1e"), (0, "3o")]),
        ([], []),
        ((), ()),
        ([(1, e3.Irrep("1o")), e3.Irrep("0e"), e3.Irreps("2x1e")[0]], [(1, "1o"), "0e", (2, "1e")]),
        (Irreps("2x1e"), "2x1e"),
        (e3.Irreps("2x1e+0o"), "2x1e+0o"),
    ],
)
def test_irreps_from_objects(mine, theirs):
    assert same(Irreps(mine), e3.Irreps(theirs))
    x = Irreps("2x1e")
    assert Irreps(x) is x


def test_irreps_list_with_strings():
    # e3nn only takes single irreps as list items; "2x1e" is a convenience superset here.
    assert Irreps(["2x1e", "0e"]) == "2x1e+1x0e"
    assert Irreps(["0e + 3x1o"]) == "0e+3x1o"


@pytest.mark.parametrize("bad", BAD)
def test_irreps_bad_strings(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))) as info:
        Irreps(bad)
    assert "[<mul>x]<l><e|o|y>" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [[(-1, "1e")], [(1.5, "1e")], [(1, (1, 0))], [(1, (-1, 1))], [3], [(1, 2, 3)], [(True, "1e")], 3, 1.5,
     [("1e", 2)], [[1, "2q"]]],
)
def test_irreps_bad_objects(bad):
    with pytest.raises(ValueError):
        Irreps(bad)


def test_irreps_bad_string_messages():
    for bad in ["1x", "-1e", "2q", "x1e"]:
        with pytest.raises(ValueError, match=r"unable to parse irreps '" + re.escape(bad) + "'"):
            Irreps(bad)
    with pytest.raises(ValueError, match="empty term"):
        Irreps("1e+")


def test_irreps_indexing_and_arithmetic():
    x, y = Irreps("2x0e+3x1o+1x2e"), e3.Irreps("2x0e+3x1o+1x2e")
    for i in range(-3, 3):
        assert x[i] == y[i] and type(x[i]) is MulIr
    for sl in [slice(1, None), slice(None, 2), slice(None, None, -1), slice(0, 0)]:
        assert same(x[sl], y[sl]) and type(x[sl]) is Irreps
    for n in range(4):
        assert same(n * x, n * y) and same(x * n, y * n) and type(n * x) is Irreps
    assert 2 * Irreps("0e+1o") == "1x0e+1x1o+1x0e+1x1o"
    with pytest.raises(NotImplementedError):
        x * x
    with pytest.raises(TypeError):
        x * 1.5
    assert same(x + Irreps("1o"), y + e3.Irreps("1o")) and type(x + "1o") is Irreps
    assert same(x + "4x3e", y + "4x3e")
    assert "1o" + x == "1o+2x0e+3x1o+1x2e"
    assert x + Irrep("1o") == "2x0e+3x1o+1x2e+1x1o" and x + MulIr(2, "0o") == "2x0e+3x1o+1x2e+2x0o"
    assert (x + Irreps("")) == x
    assert Irreps("1x0e") == "1x0e" and Irreps("1x0e") == "0e" and Irreps("1x0e") != "1x0o"
    assert Irreps("1e+1e") != "2x1e"  # equality is as tuples, not after simplification
    assert Irreps("1e") != "not irreps" and not (Irreps("1e") == "not irreps")
    assert MulIr(2, "1o") in Irreps("2x1o") and MulIr(1, "1o") not in Irreps("2x1o")
    with pytest.raises(ValueError):
        x.count("2q")


def test_slice_by_mul_matches_e3nn():
    for s in ["2x0e+3x1o+0x2e+1x2o", "0x0e+2x1o+0x2e+0x3e+1x1e+0x0o", "", "1e"]:
        x, y = Irreps(s), e3.Irreps(s)
        n = x.num_irreps
        for a, b in itertools.product([None, *range(-n - 2, n + 3)], repeat=2):
            start, stop, _ = slice(a, b).indices(n)
            if start <= stop:  # e3nn 0.6.0 can fail on empty ranges with start > stop
                assert same(x.slice_by_mul[a:b], y.slice_by_mul[a:b]), (s, a, b)
            else:
                assert x.slice_by_mul[a:b] == ""
    assert Irreps("2x0e+3x1o").slice_by_mul[1:1:1] == Irreps("2x0e+3x1o").slice_by_mul[1:1] == "0x0e"  # as e3nn
    assert Irreps("3x0e").slice_by_mul[2:1] == ""  # e3nn 0.6.0 fails here (a multiplicity of -1)
    assert Irreps("3x0e+0x1o").slice_by_mul[-1:1] == ""
    with pytest.raises(IndexError):
        Irreps("2x0e").slice_by_mul[1]
    with pytest.raises(NotImplementedError):
        Irreps("2x0e").slice_by_mul[0:2:2]


@pytest.mark.parametrize("lmax", range(6))
@pytest.mark.parametrize("p", [1, -1])
def test_spherical_harmonics_irreps(lmax, p):
    assert same(Irreps.spherical_harmonics(lmax, p), e3.Irreps.spherical_harmonics(lmax, p))
    assert same(Irreps.spherical_harmonics(lmax), e3.Irreps.spherical_harmonics(lmax))
    assert Irreps.spherical_harmonics(3) == "0e+1o+2e+3o"
    with pytest.raises(ValueError):
        Irreps.spherical_harmonics(2, 0)


# ---------------------------------------------------------------------------------------------
# filter
# ---------------------------------------------------------------------------------------------


FILTER_IRREPS = "0e+1o+2e+2x1o+0x0e+3x0o+1e"


@pytest.mark.parametrize(
    "kwargs",
    [dict(keep=["1o"]), dict(keep=["1o", "2e"]), dict(drop=["2e"]), dict(drop=["1o", "0e"]),
     dict(keep=[e3.Irrep("0e"), e3.Irrep("0o")]), dict(keep=lambda m: m.mul > 1), dict(drop=lambda m: m.ir.l == 1),
     dict(lmax=1), dict(lmax=0), dict(keep=[])],
)
def test_filter_matches_e3nn_where_e3nn_works(kwargs):
    assert same(Irreps(FILTER_IRREPS).filter(**kwargs), e3.Irreps(FILTER_IRREPS).filter(**kwargs))


def test_filter_strings_and_irreps():
    # e3nn 0.6.0 gets these wrong (filter(keep="1o") is empty there); the documented semantics are checked.
    x = Irreps("0e+1o+2e")
    assert x.filter(keep="1o") == "1o"
    assert x.filter(drop="2e") == "0e+1o"
    assert x.filter(keep="1o + 2e") == "1o+2e"
    assert x.filter(keep="2e + 1o") == "1o+2e"  # the order of self is kept
    assert x.filter(keep=Irreps("5x1o")) == "1o"  # multiplicities of keep are ignored
    assert x.filter(keep=Irrep("0e")) == "0e"
    assert x.filter(keep=MulIr(3, "2e")) == "2e"
    assert x.filter(drop=Irreps("0e+2e")) == "1o"
    assert x.filter(keep=(1, -1)) == "1o"
    assert x.filter(keep=[(1, -1), (7, (0, 1))]) == "0e+1o"
    assert x.filter(keep=["0e + 2e", MulIr(1, "1o")]) == x
    assert x.filter(keep="3e") == ""
    assert x.filter(drop="") == x
    y = Irreps("2x1o+0x0e+3x0e+1x1o+1x0o")
    assert y.filter(keep="0e+1o") == "2x1o+0x0e+3x0e+1x1o"  # zero multiplicities kept, nothing merged
    assert y.filter(drop="1o") == "0x0e+3x0e+1x0o"


def test_filter_lmax_combinations_and_errors():
    x = Irreps("0e+1o+2e+3x0o+1e")
    assert x.filter(keep="0e+2e", lmax=1) == "0e"
    assert x.filter(drop="0o", lmax=1) == "0e+1o+1e"
    assert x.filter(keep=lambda m: m.ir.p == 1, lmax=0) == "0e"
    assert x.filter(lmax=1) == "0e+1o+3x0o+1e"
    assert x.filter() == x
    with pytest.raises(ValueError, match="not both"):
        x.filter(keep="0e", drop="1o")
    with pytest.raises(ValueError):
        x.filter(keep="2q")


irrep_st = st.builds(Irrep, st.integers(0, 6), st.sampled_from([1, -1]))
irreps_st = st.lists(st.tuples(st.integers(0, 5), irrep_st), max_size=8).map(Irreps)


@settings(max_examples=60, deadline=None)
@given(irreps_st, st.lists(irrep_st, max_size=5))
def test_filter_string_equals_e3nn_list_form(x, irs):
    spec = "+".join(repr(ir) for ir in irs)
    as_list = [repr(ir) for ir in irs]
    y = e3.Irreps(x)
    assert same(x.filter(keep=spec), y.filter(keep=as_list))
    assert same(x.filter(drop=spec), y.filter(drop=as_list))
    assert same(x.filter(keep=Irreps(spec)), y.filter(keep=as_list))


# ---------------------------------------------------------------------------------------------
# Grammar and algebra properties
# ---------------------------------------------------------------------------------------------

ws = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def irreps_strings(draw):
    """A valid irreps string with random spacing, and its canonical repr."""
    terms, canon = [], []
    for _ in range(draw(st.integers(0, 6))):
        mul = draw(st.one_of(st.none(), st.integers(0, 300)))
        l = draw(st.integers(0, 12))
        char = draw(st.sampled_from("eoy"))
        p = {"e": "e", "o": "o", "y": "e" if l % 2 == 0 else "o"}[char]
        mul_text = "" if mul is None else f"{mul}{draw(ws)}x{draw(ws)}"
        terms.append(f"{draw(ws)}{mul_text}{l}{draw(ws)}{char}{draw(ws)}")
        canon.append(f"{1 if mul is None else mul}x{l}{p}")
    return "+".join(terms), "+".join(canon)


@settings(max_examples=150, deadline=None)
@given(irreps_strings())
def test_valid_strings_round_trip(case):
    text, canonical = case
    x = Irreps(text)
    assert repr(x) == canonical
    assert Irreps(repr(x)) == x
    assert same(x, e3.Irreps(text))


BAD_TERMS = ["", "x", "1x", "x1e", "-1e", "1.5e", "2q", "1", "e", "1x1", "1e1", "1xe", "1x2x3e", "1e-", "1 2e",
             "2x-1e", "1eo", "o", "1_0e", "1E", "١e"]


@settings(max_examples=150, deadline=None)
@given(irreps_strings(), st.sampled_from(BAD_TERMS), st.integers(0, 10))
def test_strings_with_a_bad_term_raise(case, bad, where):
    terms = case[0].split("+") if case[0] else []
    terms.insert(where % (len(terms) + 1), bad)
    text = "+".join(terms)
    assume(text.strip() != "")  # "" alone is the empty irreps
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        Irreps(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789xeoy+ -.", max_size=12))
def test_random_strings_raise_or_agree_with_e3nn(text):
    try:
        x = Irreps(text)
    except ValueError:
        return
    assert same(x, e3.Irreps(text))
    assert Irreps(repr(x)) == x


@settings(max_examples=100, deadline=None)
@given(irreps_st)
def test_sort_properties(x):
    s = x.sort()
    n = len(x)
    assert sorted(s.p) == list(range(n)) and sorted(s.inv) == list(range(n))
    assert all(s.irreps[i] == x[s.inv[i]] for i in range(n))
    assert all(s.irreps[s.p[j]] == x[j] for j in range(n))
    assert all(s.irreps[i].ir <= s.irreps[i + 1].ir for i in range(n - 1))
    # stable: equal irreps keep their relative order
    assert all(s.inv[i] < s.inv[i + 1] for i in range(n - 1) if s.irreps[i].ir == s.irreps[i + 1].ir)
    t = e3.Irreps(x).sort()
    assert same(s.irreps, t.irreps) and s.p == t.p and s.inv == t.inv


@settings(max_examples=100, deadline=None)
@given(irreps_st)
def test_simplify_properties(x):
    s = x.simplify()
    assert s.simplify() == s
    assert s.dim == x.dim and s.num_irreps == x.num_irreps
    assert all(m.mul > 0 for m in s)
    assert all(s[i].ir != s[i + 1].ir for i in range(len(s) - 1))
    assert same(s, e3.Irreps(x).simplify())
    assert same(x.regroup(), e3.Irreps(x).regroup())
    assert x.regroup().regroup() == x.regroup()


@settings(max_examples=100, deadline=None)
@given(irreps_st, irreps_st)
def test_sum_properties(x, y):
    z = x + y
    assert z.dim == x.dim + y.dim and z.num_irreps == x.num_irreps + y.num_irreps and len(z) == len(x) + len(y)
    assert z[: len(x)] == x and z[len(x):] == y
    slices = z.slices()
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    assert [sl.stop - sl.start for sl in slices] == [m.dim for m in z]
    if z:
        assert slices[0].start == 0 and slices[-1].stop == z.dim
    assert z.ls == x.ls + y.ls


@settings(max_examples=60, deadline=None)
@given(irreps_st, st.integers(-2, 12), st.integers(-2, 12))
def test_slice_by_mul_properties(x, a, b):
    part = x.slice_by_mul[a:b]
    start, stop, _ = slice(a, b).indices(x.num_irreps)
    if start <= stop:
        assert same(part, e3.Irreps(x).slice_by_mul[a:b])
    assert part.num_irreps == max(0, stop - start)
    assert part.ls == x.ls[a:b]


# ---------------------------------------------------------------------------------------------
# randn
# ---------------------------------------------------------------------------------------------


def test_randn_component():
    x = Irreps("2x0e+3x1o+1x2e")
    torch.manual_seed(1)
    a = x.randn(4, -1, 2, dtype=torch.float64)
    torch.manual_seed(1)
    b = torch.randn(4, x.dim, 2, dtype=torch.float64)
    assert a.shape == (4, 16, 2) and torch.equal(a, b)
    big = Irreps("100x1o").randn(10_000, -1, dtype=torch.float64)
    assert abs(big.mean().item()) < 5e-3 and abs(big.var().item() - 1) < 1e-2  # about 3 standard deviations
    r = x.randn(-1, requires_grad=True)
    assert r.shape == (16,) and r.requires_grad and r.is_leaf and r.dtype == torch.get_default_dtype()


@pytest.mark.parametrize("size", [(-1,), (3, -1), (-1, 5), (2, -1, 3)])
def test_randn_norm(size):
    x = Irreps("2x0e+3x1o+0x2e+1x2e+2x3o")
    r = x.randn(*size, normalization="norm", dtype=torch.float64)
    di = size.index(-1)
    assert r.shape == tuple(x.dim if s == -1 else s for s in size)
    r = r.movedim(di, -1)
    for (mul, ir), sl in zip(x, x.slices()):
        block = r[..., sl].reshape(*r.shape[:-1], mul, ir.dim)
        torch.testing.assert_close(block.norm(dim=-1), torch.ones(block.shape[:-1], dtype=torch.float64),
                                   atol=1e-14, rtol=0)


@pytest.mark.parametrize("normalization", ["component", "norm"])
def test_randn_same_stream_as_e3nn(normalization):
    s = "2x0e+3x1o+1x2e"
    torch.manual_seed(3)
    a = Irreps(s).randn(2, -1, 3, normalization=normalization, dtype=torch.float64)
    torch.manual_seed(3)
    b = e3.Irreps(s).randn(2, -1, 3, normalization=normalization, dtype=torch.float64)
    torch.testing.assert_close(a, b, atol=1e-15, rtol=0)


def test_randn_errors_and_edge_cases():
    x = Irreps("1o")
    for size in [(), (3,), (-1, -1), (2, -1, -1)]:
        with pytest.raises(ValueError, match="exactly one -1"):
            x.randn(*size)
    with pytest.raises(ValueError, match="normalization"):
        x.randn(-1, normalization="integral")
    assert Irreps("").randn(3, -1, normalization="norm").shape == (3, 0)
    r = x.randn(-1, normalization="norm", requires_grad=True)
    assert r.requires_grad and r.is_leaf


# ---------------------------------------------------------------------------------------------
# Representation matrices (need fastso3.o3._wigner and fastso3.o3._rotation)
# ---------------------------------------------------------------------------------------------



D_IRREPS = ["0e", "1o", "1e", "2x0e+3x1o+0x2e+1x2o+2x1e+1x0o+3x3e", "", "0x1e", "4x4o+2x5e"]


def _close(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype == torch.float64
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.usefixtures("f64")
@pytest.mark.parametrize("s", D_IRREPS)
def test_D_from_angles_matches_e3nn(s):
    torch.manual_seed(0)
    a, b, c = e3.rand_angles(4, 3, dtype=torch.float64)
    k = torch.randint(0, 2, (4, 3)).to(torch.float64)
    x, y = Irreps(s), e3.Irreps(s)
    if not y.dim:  # e3nn's direct_sum cannot handle an empty list
        assert x.D_from_angles(a, b, c).shape == (4, 3, 0, 0)
        return
    _close(x.D_from_angles(a, b, c), y.D_from_angles(a, b, c))
    _close(x.D_from_angles(a, b, c, k), y.D_from_angles(a, b, c, k))
    if len(y) == 1 and y[0].mul == 1:
        ir = Irrep(s)
        _close(ir.D_from_angles(a, b, c, k), e3.Irrep(s).D_from_angles(a, b, c, k))
        _close(ir.D_from_angles(a, b, c), e3.Irrep(s).D_from_angles(a, b, c))


@pytest.mark.usefixtures("f64")
@pytest.mark.parametrize("s", D_IRREPS)
def test_D_from_matrix_quaternion_axis_angle_match_e3nn(s):
    torch.manual_seed(0)
    x, y = Irreps(s), e3.Irreps(s)
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    R = e3.rand_matrix(5, dtype=torch.float64) * signs[:, None, None]  # proper and improper
    q = e3.rand_quaternion(5, dtype=torch.float64)
    axis, angle = torch.randn(5, 3, dtype=torch.float64), 4 * torch.rand(5, dtype=torch.float64)
    k = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    if not y.dim:
        assert x.D_from_matrix(R).shape == (5, 0, 0)
        return
    _close(x.D_from_matrix(R), y.D_from_matrix(R))
    _close(x.D_from_quaternion(q), y.D_from_quaternion(q))
    _close(x.D_from_quaternion(q, k), y.D_from_quaternion(q, k))
    _close(x.D_from_axis_angle(axis, angle), y.D_from_axis_angle(axis, angle))
    if len(y) == 1 and y[0].mul == 1:
        ir, jr = Irrep(s), e3.Irrep(s)
        _close(ir.D_from_matrix(R), jr.D_from_matrix(R))
        _close(ir.D_from_quaternion(q, k), jr.D_from_quaternion(q, k))
        _close(ir.D_from_axis_angle(axis, angle), jr.D_from_axis_angle(axis, angle))


@pytest.mark.usefixtures("f64")
def test_D_structure():
    torch.manual_seed(0)
    R = e3.rand_matrix(3, dtype=torch.float64)
    _close(Irrep("1o").D_from_matrix(R), R)  # D^1(R) = R
    _close(Irrep("1o").D_from_matrix(-R), -R)
    _close(Irrep("1e").D_from_matrix(-R), R)
    x = Irreps("2x1o+1x0e+1x1e")
    D = x.D_from_matrix(-R)
    expected = torch.zeros(3, 10, 10, dtype=torch.float64)
    expected[:, 0:3, 0:3] = -R
    expected[:, 3:6, 3:6] = -R
    expected[:, 6, 6] = 1
    expected[:, 7:10, 7:10] = R
    _close(D, expected)


def test_D_broadcasting_dtypes_and_gradients():
    x = Irreps("2x1o+1x2e")
    D = x.D_from_angles(torch.zeros(3, dtype=torch.float64), 0.3, torch.zeros(2, 1, dtype=torch.float64),
                        k=torch.tensor(1.0, dtype=torch.float64))
    assert D.shape == (2, 3, 11, 11) and D.dtype == torch.float64
    assert x.D_from_angles(0.1, 0.2, 0.3).dtype == torch.get_default_dtype() == torch.float32
    a = torch.tensor([0.3, 1.1], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.7, 0.2], dtype=torch.float64)
    c = torch.tensor([-0.4, 2.0], dtype=torch.float64)

    def f(a):
        return x.D_from_angles(a, b, c)

    assert torch.autograd.gradcheck(f, (a,))


@pytest.mark.parametrize("value", [[(32, 1)], [(1, -1)], [(0, 1)], [[2, 0]]])
def test_plain_pairs_in_a_list_are_mul_and_irrep_as_in_e3nn(value):
    # e3nn reads (32, 1) as 32 copies of Irrep(1), which has no parity: a ValueError, not 1x32e.
    with pytest.raises(ValueError):
        e3.Irreps(value)
    with pytest.raises(ValueError, match="needs its parity"):
        Irreps(value)
    assert Irreps([(32, (1, 1))]) == "32x1e" == str(e3.Irreps([(32, (1, 1))]))
    assert Irreps("0e+1o").filter(keep=[(1, -1)]) == "1x1o" == str(e3.Irreps("0e+1o").filter(keep=[(1, -1)]))  # irreps
