from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config

MINIMAL = {
    "api_keys": [{"name": "k", "sha256": "a" * 64}],
    "models": [{"name": "m", "deployments": [{"kind": "local"}]}],
}


def test_minimal_config_gets_safe_defaults() -> None:
    config = parse_config(MINIMAL, env={})
    assert config.listener.host == "127.0.0.1"
    assert config.listener.plain_http is False
    assert config.tls.cert_file is None


def test_environment_variables_are_interpolated_with_defaults() -> None:
    data = {
        **MINIMAL,
        "api_keys": [{"name": "k", "sha256": "${KEY_HASH}"}],
        "listener": {"port": "${PORT:-9443}"},
    }
    config = parse_config(data, env={"KEY_HASH": "b" * 64})
    assert config.api_keys[0].sha256 == "b" * 64
    assert config.listener.port == 9443


def test_missing_environment_variable_names_the_key_path() -> None:
    data = {**MINIMAL, "api_keys": [{"name": "k", "sha256": "${NOPE}"}]}
    with pytest.raises(ConfigError, match=r"api_keys\[0\]\.sha256: environment variable NOPE"):
        parse_config(data, env={})


def test_invalid_values_name_the_key_path() -> None:
    data = {**MINIMAL, "models": [{"name": "m", "deployments": [{"kind": "local", "slots": 0}]}]}
    with pytest.raises(ConfigError, match=r"models\[0\]\.deployments\[0\]\.slots"):
        parse_config(data, env={})
    with pytest.raises(ConfigError, match=r"listener\.colour"):
        parse_config({**MINIMAL, "listener": {"colour": "red"}}, env={})


def test_an_embedding_deployment_refuses_a_chat_model_package() -> None:
    deployment = {"kind": "local", "embedding": True, "model_file": "x.gguf"}
    data = {**MINIMAL, "models": [{"name": "e", "deployments": [deployment]}]}
    with pytest.raises(ConfigError, match=r"models\[0\]\.deployments\[0\].*model_file"):
        parse_config(data, env={})
    deployment = {"kind": "local", "embedding": True}
    parse_config({**MINIMAL, "models": [{"name": "e", "deployments": [deployment]}]}, env={})


def test_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(ConfigError, match="plain_http is only allowed on a loopback"):
        parse_config({**MINIMAL, "listener": {"host": "0.0.0.0", "plain_http": True}}, env={})
    parse_config({**MINIMAL, "listener": {"host": "127.0.0.1", "plain_http": True}}, env={})


def test_remote_upstreams_need_https_unless_loopback() -> None:
    def remote(url: str) -> dict:
        return {
            **MINIMAL,
            "models": [{"name": "m", "deployments": [{"kind": "remote", "base_url": url}]}],
        }

    with pytest.raises(ConfigError, match="use https"):
        parse_config(remote("http://10.0.0.5/v1"), env={})
    parse_config(remote("http://127.0.0.1:9000/v1"), env={})
    parse_config(remote("https://api.example.com/v1"), env={})


def test_key_hash_must_be_a_sha256_and_fallback_must_exist() -> None:
    with pytest.raises(ConfigError, match="hash-key"):
        parse_config({**MINIMAL, "api_keys": [{"name": "k", "sha256": "secret"}]}, env={})
    data = {
        **MINIMAL,
        "models": [{"name": "m", "deployments": [{"kind": "local"}], "fallback": "other"}],
    }
    with pytest.raises(ConfigError, match="not a configured model"):
        parse_config(data, env={})


def test_future_sections_refuse_keys_instead_of_ignoring_them() -> None:
    with pytest.raises(ConfigError, match="pii"):
        parse_config({**MINIMAL, "pii": {"mode": "tokenize"}}, env={})


def test_shipped_default_config_is_valid() -> None:
    config = load_config(Path("config/gateway.yaml"), env={"GATEWAY_API_KEY_SHA256": "c" * 64})
    assert config.listener.port == 8443
    assert config.models[0].deployments[0].kind == "local"


def test_unreadable_and_non_yaml_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_a_bare_yaml_off_means_the_word_off() -> None:
    import yaml

    from gateway.config import parse_config

    text = """
api_keys: [{name: k, sha256: "%s"}]
pii: {ner: off}
models:
  - {name: m, deployments: [{kind: local}], pii: {mode: off}}
""" % ("0" * 64)
    config = parse_config(yaml.safe_load(text))
    assert config.pii.ner == "off"
    assert config.models[0].pii.mode == "off"
