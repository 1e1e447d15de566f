"""StreamConfig: the field table (defaults, signature, docs), validation errors (field + value),
repr, equality, replace, copy."""

import copy
import inspect
import math
import pickle
from pathlib import Path

import pytest

from mullama import ConfigError, MullamaError, StreamConfig

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parent.parent

# The core's field table, read back through the binding: (name, annotation, default, doc).
FIELDS = StreamConfig.fields()
DEFAULTS = {name: default for name, _, default, _ in FIELDS}


def _same_value(a: object, b: object) -> bool:
    # type() too, or False == 0 and 1.0 == 1 would pass.
    return type(a) is type(b) and a == b


def test_field_table_rows():
    assert [name for name, _, _, _ in FIELDS] == list(StreamConfig().to_dict())
    for row in FIELDS:
        name, annotation, _, doc = row
        assert isinstance(row, tuple) and len(row) == 4
        assert isinstance(annotation, str) and annotation, name
        assert isinstance(doc, str) and doc.strip() == doc and "\n" not in doc and doc, name
    assert StreamConfig.max_tokens.__doc__ == FIELDS[0][3]


def test_field_table_defaults_are_fresh_values():
    fields = StreamConfig.fields()
    stops = next(default for name, _, default, _ in fields if name == "stop_sequences")
    stops.append("x")
    assert StreamConfig.fields() == FIELDS
    assert StreamConfig().stop_sequences == []


def test_defaults_are_the_table_defaults():
    config = StreamConfig()
    for name, expected in DEFAULTS.items():
        assert _same_value(getattr(config, name), expected), name
    assert config.to_dict() == DEFAULTS


def test_constructor_signature_is_the_field_table():
    # pyo3 needs the text_signature as a literal in crates/mullama-py/src/config.rs; this is
    # what keeps it from drifting from the table.
    params = list(inspect.signature(StreamConfig).parameters.values())
    assert [p.name for p in params] == [name for name, _, _, _ in FIELDS]
    for param, (name, _, default, _) in zip(params, FIELDS, strict=True):
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert _same_value(param.default, default), name


def _docs_table() -> list[list[str]]:
    text = (REPO / "docs" / "streaming.md").read_text(encoding="utf-8")
    section = text.split("\n## StreamConfig\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines[0] == "| field | default | meaning |" and set(lines[1]) <= set("|- ")
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_docs_table_is_the_field_table():
    expected = [[f"`{name}`", repr(default), doc] for name, _, default, doc in FIELDS]
    assert _docs_table() == expected


def test_floats_read_back_as_typed_despite_f32_storage():
    config = StreamConfig(temperature=0.7, top_p=0.95, min_p=0.05, repeat_penalty=1.1)
    assert (config.temperature, config.top_p, config.min_p, config.repeat_penalty) == (
        0.7,
        0.95,
        0.05,
        1.1,
    )


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        StreamConfig(128)  # type: ignore[misc]


def test_unknown_field_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="max_token"):
        StreamConfig(max_token=5)  # type: ignore[call-arg]


def test_repr_lists_every_field():
    shown = ", ".join(f"{name}={default!r}" for name, default in DEFAULTS.items())
    assert repr(StreamConfig()) == f"StreamConfig({shown})"
    config = StreamConfig(seed=7, stop_sequences=["\n", "it's"], include_stop=True)
    assert "seed=7" in repr(config)
    assert "stop_sequences=['\\n', \"it's\"]" in repr(config)
    assert "include_stop=True" in repr(config)


def test_equality_is_by_value():
    assert StreamConfig() == StreamConfig()
    assert StreamConfig(seed=1) == StreamConfig(seed=1)
    assert StreamConfig(seed=1) != StreamConfig(seed=2)
    assert StreamConfig(stop_sequences="x") == StreamConfig(stop_sequences=["x"])
    assert StreamConfig() != "StreamConfig()"
    assert StreamConfig() != None  # noqa: E711


def test_single_str_stop_is_one_stop_sequence():
    assert StreamConfig(stop_sequences="END").stop_sequences == ["END"]
    assert StreamConfig(stop_sequences=("a", "b")).stop_sequences == ["a", "b"]


@pytest.mark.parametrize("stops", ["\ud800", ["ok", "a\udfffb"]])
def test_a_lone_surrogate_in_a_stop_is_a_config_error_naming_the_field(stops):
    with pytest.raises(ConfigError, match="stop_sequences.*lone surrogate") as caught:
        StreamConfig(stop_sequences=stops)
    assert caught.value.field == "stop_sequences"


def test_stop_sequences_getter_returns_a_copy():
    config = StreamConfig(stop_sequences=["a"])
    config.stop_sequences.append("b")
    assert config.stop_sequences == ["a"]


def test_replace_returns_a_new_validated_config():
    base = StreamConfig(max_tokens=10)
    changed = base.replace(max_tokens=20, seed=3)
    assert (changed.max_tokens, changed.seed) == (20, 3)
    assert base.max_tokens == 10 and base.seed is None
    assert base.replace() == base and base.replace() is not base
    with pytest.raises(ConfigError) as info:
        base.replace(top_p=0)
    assert info.value.field == "top_p"
    with pytest.raises(TypeError, match="nope"):
        base.replace(nope=1)


def test_setters_validate_and_keep_the_old_value_on_error():
    config = StreamConfig()
    config.max_tokens = 5
    config.seed = 42
    config.seed = None
    config.stop_sequences = "x"
    assert (config.max_tokens, config.seed, config.stop_sequences) == (5, None, ["x"])
    with pytest.raises(ConfigError) as info:
        config.max_tokens = 0
    assert info.value.field == "max_tokens"
    assert config.max_tokens == 5
    with pytest.raises(ConfigError):
        config.stop_sequences = ["ok", ""]
    assert config.stop_sequences == ["x"]


def test_assigning_a_name_that_is_not_a_field_is_an_attribute_error():
    config = StreamConfig()
    with pytest.raises(AttributeError, match="max_token"):
        config.max_token = 5  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="replace"):
        config.replace = None  # type: ignore[method-assign,assignment]
    assert config == StreamConfig()


def test_attributes_cannot_be_deleted():
    config = StreamConfig()
    with pytest.raises(AttributeError):
        del config.max_tokens


def test_copy_deepcopy_and_pickle_keep_every_field():
    config = StreamConfig(
        max_tokens=9, temperature=0.0, seed=5, stop_sequences=["###"], include_stop=True
    )
    assert copy.copy(config) == config
    assert copy.deepcopy(config) == config
    assert pickle.loads(pickle.dumps(config)) == config


# (field, bad value, text the error's .value must equal or None to only require a str)
OUT_OF_RANGE = [
    ("max_tokens", 0, "0"),
    ("temperature", -0.5, "-0.5"),
    ("temperature", math.nan, None),
    ("temperature", math.inf, None),
    ("temperature", 1e300, None),
    ("top_p", 0.0, "0"),
    ("top_p", 1.5, "1.5"),
    ("min_p", -0.1, "-0.1"),
    ("min_p", 1.5, "1.5"),
    ("repeat_penalty", 0.0, "0"),
    ("repeat_penalty", -1.0, "-1"),
    ("stop_sequences", [""], None),
    ("stop_sequences", ["ok", ""], None),
    ("stop_sequences", "", None),
    ("buffer_size", 0, "0"),
]

WRONG_TYPE_OR_SIGN = [
    ("max_tokens", -1),
    ("max_tokens", 2**70),
    ("max_tokens", 1.5),
    ("max_tokens", "10"),
    ("max_tokens", True),
    ("max_tokens", None),
    ("temperature", "hot"),
    ("temperature", None),
    ("temperature", True),
    ("top_k", -5),
    ("top_k", 3.0),
    ("top_p", [0.5]),
    ("min_p", "0"),
    ("repeat_penalty", None),
    ("seed", -1),
    ("seed", 2**64),
    ("seed", "42"),
    ("seed", 4.0),
    ("stop_sequences", 5),
    ("stop_sequences", b"stop"),
    ("stop_sequences", ["ok", 3]),
    ("stop_sequences", None),
    ("include_stop", 1),
    ("include_stop", "yes"),
    ("include_stop", None),
    ("buffer_size", -64),
    ("buffer_size", 8.0),
    ("timeout_ms", -1),
    ("timeout_ms", 2**64),
    ("timeout_ms", 1.5),
]


@pytest.mark.parametrize(("field", "bad", "shown"), OUT_OF_RANGE)
def test_out_of_range_values_raise_config_error_naming_field_and_value(field, bad, shown):
    for make in (
        lambda: StreamConfig(**{field: bad}),
        lambda: StreamConfig().replace(**{field: bad}),
        lambda: setattr(StreamConfig(), field, bad),
    ):
        with pytest.raises(ConfigError) as info:
            make()
        err = info.value
        assert isinstance(err, MullamaError)
        assert err.field == field
        assert isinstance(err.value, str)
        if shown is not None:
            assert float(err.value) == float(shown)
        assert field in str(err)


@pytest.mark.parametrize(("field", "bad"), WRONG_TYPE_OR_SIGN)
def test_wrong_types_and_negative_ints_raise_config_error_not_builtin_errors(field, bad):
    with pytest.raises(ConfigError) as info:
        StreamConfig(**{field: bad})
    assert info.value.field == field
    assert info.value.value == repr(bad)
    assert field in str(info.value)
    config = StreamConfig()
    with pytest.raises(ConfigError) as info:
        setattr(config, field, bad)
    assert info.value.field == field
    assert config == StreamConfig()


def test_extreme_but_valid_values_are_accepted():
    config = StreamConfig(
        max_tokens=2**32,
        temperature=0,
        top_k=0,
        top_p=1,
        min_p=0.5,
        seed=2**64 - 1,
        timeout_ms=0,
        buffer_size=1,
    )
    assert config.seed == 2**64 - 1
    assert config.temperature == 0.0 and isinstance(config.temperature, float)
