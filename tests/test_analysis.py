"""Which names code reads and writes: the cases that trip simple approaches."""

from __future__ import annotations

import pytest

from ipyworkers.plan.analysis import analyze


def rw(code: str) -> tuple[set[str], set[str]]:
    names = analyze(code)
    return set(names.reads), set(names.writes)


@pytest.mark.parametrize(
    "code, reads, writes",
    [
        ("y = x + 1", {"x"}, {"y"}),
        ("x = 1\ny = x", set(), {"x", "y"}),
        ("x = x + 1", {"x"}, {"x"}),
        ("x += 1", {"x"}, {"x"}),
        ("a, (b, *c) = t", {"t"}, {"a", "b", "c"}),
        ("import numpy as np\nimport os.path", set(), {"np", "os"}),
        ("from math import sqrt as s, pi", set(), {"s", "pi"}),
        ("for i in items:\n    total += i", {"items", "total"}, {"i", "total"}),
        ("with open(p) as f:\n    data = f.read()", {"p"}, {"f", "data"}),
        ("try:\n    pass\nexcept ValueError as err:\n    msg = str(err)", set(), {"err", "msg"}),
        ("if (n := len(xs)) > 3:\n    big = n", {"xs"}, {"n", "big"}),
        ("del x", {"x"}, set()),
        ("obj.attr = value", {"obj", "value"}, set()),
        ("d[k] = v", {"d", "k", "v"}, set()),
        ("print(len(data))", {"data"}, set()),
    ],
)
def test_reads_and_writes(code, reads, writes):
    assert rw(code) == (reads, writes)


def test_function_body_globals_are_reads_params_and_locals_are_not():
    code = "def f(a, b=default):\n    c = a + b\n    return c * scale + g(c)\n"
    assert rw(code) == ({"default", "scale", "g"}, {"f"})


def test_decorators_and_annotations_are_read_at_definition():
    assert rw("@deco(k)\ndef f(x: T) -> R:\n    return x") == ({"deco", "k", "T", "R"}, {"f"})


def test_recursive_function_reads_nothing_outside():
    assert rw("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)") == (set(), {"fact"})


def test_lambda_reads_its_free_names():
    assert rw("f = lambda v: v * k") == ({"k"}, {"f"})


def test_comprehension_variables_stay_inside():
    assert rw("ys = [x * w for x in xs if x > lo]") == ({"w", "xs", "lo"}, {"ys"})
    assert rw("d = {k: v for k, v in pairs}") == ({"pairs"}, {"d"})


def test_nested_comprehension_reads_its_own_targets_only_inside():
    assert rw("m = [[i * j for j in cols] for i in rows]") == ({"cols", "rows"}, {"m"})


def test_class_body_and_methods():
    code = "class A(Base):\n    size = n\n    def get(self):\n        return self.size + offset\n"
    assert rw(code) == ({"Base", "n", "offset"}, {"A"})


def test_global_statement_in_function_writes_the_global():
    code = "def bump():\n    global counter\n    counter = counter + 1\n"
    assert rw(code) == (set(), {"bump", "counter"})


def test_store_inside_a_branch_does_not_hide_a_later_read():
    code = "if flag:\n    x = 1\nprint(x)"
    assert rw(code) == ({"flag", "x"}, {"x"})


def test_builtins_are_reported_apart():
    names = analyze("print(len(data))")
    assert names.builtin_reads == {"print", "len"}


def test_a_rebound_builtin_is_a_write():
    assert rw("list = [1]\ny = list") == (set(), {"list", "y"})


def test_code_that_does_not_parse_reads_and_writes_nothing():
    names = analyze("x = = 1")
    assert (names.reads, names.writes) == (frozenset(), frozenset())


def test_ipython_transformed_magic_reads_nothing():
    assert rw("get_ipython().run_line_magic('time', 'x = 1')") == ({"get_ipython"}, set())
