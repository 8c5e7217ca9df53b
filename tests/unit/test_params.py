import pytest

from fleetbench import params as P


def test_defaults_follow_the_reference():
    v = P.validate({})
    assert v["precision"] == "amx_bfloat16"
    assert v["mode"] == "throughput"
    assert (v["steps"], v["warmup_steps"], v["batch_size"], v["max_seq_length"]) == (100, 10, 1, 128)
    assert v["weight_sharing"] is False
    assert v["cores_per_instance"] == "auto" and v["instance_number"] == "auto"
    assert v["case"] == "inference-throughput"
    assert v["model_source"] == "hub" and v["model_revision"] == P.DEFAULT_MODEL_REVISION


def test_strings_from_extra_vars_are_coerced():
    v = P.validate({"batch_size": "8", "weight_sharing": "False", "steps": "20", "case_type": "gated"})
    assert v["batch_size"] == 8 and v["weight_sharing"] is False
    assert v["steps"] == 20 and v["warmup_steps"] == 2
    assert v["case"] == "inference-throughput-gated"


def test_mode_dependent_defaults():
    assert P.validate({"mode": "latency"})["weight_sharing"] is True
    assert P.validate({"mode": "accuracy"})["batch_size"] == 100


@pytest.mark.parametrize(("given", "names"), [
    ({"precision": "amx_int9"}, ["amx_int9", "avx_fp32", "amx_bfloat32"]),
    ({"batch_size": "0"}, ["batch_size=0", "from 1 to 4096"]),
    ({"batch_size": "1 && id"}, ["1 && id", "integer"]),
    ({"mode": "Throughput"}, ["Throughput", "throughput, latency, accuracy", "lower case"]),
    ({"weight_sharing": "maybe"}, ["maybe", "true or false"]),
    ({"cores_per_instance": "-2"}, ["-2", "auto"]),
    ({"max_seq_length": "4"}, ["max_seq_length=4"]),
    ({"mode": "latency", "batch_size": "8"}, ["latency", "batch 1"]),
    ({"model_source": "dir"}, ["model_dir"]),
    ({"model_revision": "../../etc"}, ["model_revision"]),
    ({"model_id": "a b"}, ["model_id"]),
    ({"dataset_url": "ftp://x"}, ["dataset_url"]),
    ({"case_type": "nightly"}, ["nightly", "gated", "pkm"]),
])
def test_bad_values_name_the_value_and_the_allowed_ones(given, names):
    with pytest.raises(P.ParamError) as err:
        P.validate(given)
    for name in names:
        assert name in str(err.value)


def test_upper_case_wsf_names_are_aliases():
    assert P.validate({"PRECISION": "avx_fp32"})["precision"] == "avx_fp32"
    assert P.validate({"Batch_Size": "4"})["batch_size"] == 4
    with pytest.raises(P.ParamError, match="conflicts"):
        P.validate({"PRECISION": "amx_int8", "precision": "avx_fp32"})


def test_model_dir_implies_dir_source():
    assert P.validate({"model_dir": "/m"})["model_source"] == "dir"
    with pytest.raises(P.ParamError, match="model_dir"):
        P.validate({"model_dir": "/m", "model_source": "synthetic"})


def test_auto_timeout_grows_with_work():
    small = P.validate({"steps": "10"})["case_timeout"]
    big = P.validate({"steps": "1000", "batch_size": "8"})["case_timeout"]
    assert 600 < small < big
    assert P.validate({"case_timeout": "60"})["case_timeout"] == 60
