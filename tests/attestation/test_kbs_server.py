"""The test KBS (Trustee's RCAR protocol) and CDH servers, driven as real processes.

The client side here is written by hand from the protocol document: raw httpx for HTTP,
jwcrypto for the TEE keys and for decrypting the JWE (a standard JOSE library checking the
server's own ``cryptography`` JWE), SimulatedProvider and a synthetic TDX quote for evidence.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwcrypto.jwe import JWE
from jwcrypto.jwk import JWK

from confidential_common.tee.keys import b64url_decode
from confidential_common.tee.providers import SimulatedProvider
from tests.support.kbs_process import (
    ServerProcess,
    ServerStartError,
    cdh_server_process,
    kbs_server_process,
    make_tls_files,
    write_policy,
)

ERRORS = "https://github.com/confidential-containers/kbs/errors/"
GOOD_CODE = "ab" * 32
OTHER_CODE = "cd" * 32
MRTD = bytes(range(48))
MODEL_KEY = bytes(range(100, 132))  # the AES key of an encrypted model file
RESOURCES = {
    "default/key/model": MODEL_KEY,
    "default/key/restricted": b"only for other code",
}
REQUEST = {"version": "0.4.0", "tee": "sample", "extra-params": ""}


# --- a hand-written client flow ------------------------------------------------------------


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def runtime_digest(tee_pubkey: dict[str, str], nonce: str, additional: str = "") -> bytes:
    runtime = {"tee-pubkey": tee_pubkey, "nonce": nonce, "additional-evidence": additional}
    return hashlib.sha384(canonical(runtime)).digest()


@dataclass
class TeeKey:
    private: JWK
    alg: str

    @classmethod
    def ec(cls, crv: str = "P-256") -> TeeKey:
        return cls(JWK.generate(kty="EC", crv=crv), "ECDH-ES+A256KW")

    @classmethod
    def rsa(cls, alg: str = "RSA-OAEP-256") -> TeeKey:
        return cls(JWK.generate(kty="RSA", size=2048), alg)

    def pubkey(self) -> dict[str, str]:
        public: dict[str, str] = self.private.export_public(as_dict=True)
        names = ("kty", "crv", "x", "y") if public["kty"] == "EC" else ("kty", "n", "e")
        return {"alg": self.alg, **{name: public[name] for name in names}}

    def decrypt(self, response: dict[str, str]) -> bytes:
        jwe = JWE(algs=["ECDH-ES+A256KW", "RSA-OAEP-256", "RSA1_5", "A256GCM"])
        jwe.deserialize(json.dumps(response), key=self.private)
        return bytes(jwe.payload)


def sample_evidence(digest: bytes, code: str | None = GOOD_CODE) -> dict[str, Any]:
    evidence: dict[str, Any] = {"svn": "1", "report_data": base64.b64encode(digest).decode()}
    if code is not None:
        blob = SimulatedProvider(code).collect(digest + bytes(16)).blob
        evidence["simulated"] = json.loads(blob)
    return evidence


def synthetic_tdx_quote(report_data: bytes, mrtd: bytes = MRTD) -> bytes:
    """A v4 TDX quote laid out as Intel's DCAP library reads it, with a fake signature."""
    header = struct.pack("<HHI", 4, 2, 0x81) + bytes(4) + bytes(16) + bytes(20)
    body = bytearray(584)
    body[136:184] = mrtd
    body[520:584] = report_data
    signature = bytes(64)
    return header + bytes(body) + struct.pack("<I", len(signature)) + signature


def tdx_evidence(digest: bytes, mrtd: bytes = MRTD) -> dict[str, Any]:
    quote = synthetic_tdx_quote(digest.ljust(64, b"\0"), mrtd)
    return {"quote": base64.b64encode(quote).decode(), "cc_eventlog": None}


def attestation(nonce: str, pubkey: dict[str, str], evidence: Any) -> dict[str, Any]:
    return {
        "runtime-data": {"nonce": nonce, "tee-pubkey": pubkey},
        "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
    }


def auth(client: httpx.Client, tee: str = "sample") -> str:
    response = client.post("/kbs/v0/auth", json={**REQUEST, "tee": tee})
    assert response.status_code == 200, response.text
    assert response.json()["extra-params"] == ""
    nonce = str(response.json()["nonce"])
    assert len(base64.b64decode(nonce, validate=True)) == 32
    return nonce


def attest_sample(
    client: httpx.Client, key: TeeKey, code: str | None = GOOD_CODE
) -> httpx.Response:
    nonce = auth(client)
    digest = runtime_digest(key.pubkey(), nonce)
    body = attestation(nonce, key.pubkey(), sample_evidence(digest, code))
    return client.post("/kbs/v0/attest", json=body)


def token_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return claims


def assert_error(response: httpx.Response, status: int, kind: str, detail: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "detail"}
    assert body["type"] == ERRORS + kind, body
    assert detail in body["detail"], body


def get_resource(client: httpx.Client, name: str = "default/key/model") -> httpx.Response:
    return client.get(f"/kbs/v0/resource/{name}")


# --- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    policy = write_policy(
        tmp_path_factory.mktemp("kbs"),
        resources=RESOURCES,
        accept_sample=True,
        reference_values={"code_sha256": [GOOD_CODE, OTHER_CODE]},
        allowed={"default/key/restricted": {"code_sha256": [OTHER_CODE]}},
    )
    with kbs_server_process(policy) as server:
        yield server
        print(server.log())


@pytest.fixture(scope="module")
def tdx_kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    policy = write_policy(
        tmp_path_factory.mktemp("tdx-kbs"),
        resources=RESOURCES,
        reference_values={"mrtd": [MRTD.hex()]},
    )
    with kbs_server_process(policy) as server:
        yield server
        print(server.log())


@pytest.fixture
def client(kbs: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kbs.url, timeout=10) as session:
        yield session


def new_client(server: ServerProcess, **options: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10, **options)


# --- the protocol -------------------------------------------------------------------------------


def test_runtime_data_digest_is_sha384_of_canonical_json_as_trustee_computes_it() -> None:
    digest = hashlib.sha384(canonical({"b": 1, "a": "test", "c": {"d": "e"}})).hexdigest()
    assert digest == (
        "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c"
        "4597480a186427c813ca941da78870c3"
    )


@pytest.mark.parametrize(
    "key",
    [TeeKey.ec, lambda: TeeKey.ec("P-521"), TeeKey.rsa, lambda: TeeKey.rsa("RSA1_5")],
    ids=["ec-p256", "ec-p521", "rsa-oaep-256", "rsa1_5"],
)
def test_an_attested_session_gets_the_resource_and_jwcrypto_decrypts_it(
    client: httpx.Client, key: Any
) -> None:
    tee_key: TeeKey = key()
    attested = attest_sample(client, tee_key)
    assert attested.status_code == 200, attested.text
    claims = token_claims(attested.json()["token"])
    assert claims["customized_claims"]["runtime_data"]["tee-pubkey"] == tee_key.pubkey()
    assert claims["tcb-status"] == {"svn": "1", "code_sha256": GOOD_CODE}
    assert claims["tee"] == "sample" and claims["simulated"] is True
    assert claims["exp"] > claims["iat"]

    response = get_resource(client)
    assert response.status_code == 200, response.text
    jwe = response.json()
    assert list(jwe) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    header = json.loads(b64url_decode(jwe["protected"]))
    assert header["alg"] == tee_key.alg and header["enc"] == "A256GCM"
    assert ("epk" in header) == (tee_key.alg == "ECDH-ES+A256KW")
    assert tee_key.decrypt(jwe) == MODEL_KEY


def test_the_resource_over_https_with_the_generated_ca(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    policy = write_policy(tmp_path, resources=RESOURCES, accept_sample=True)
    with kbs_server_process(policy, tls=tls) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz", timeout=10)  # not trusted without the CA
        trusted = ssl.create_default_context(cafile=str(tls.ca_cert))
        with new_client(server, verify=trusted) as client:
            key = TeeKey.ec()
            assert attest_sample(client, key).status_code == 200
            response = get_resource(client)
            assert response.status_code == 200, server.log()
            assert key.decrypt(response.json()) == MODEL_KEY


def test_sample_evidence_is_refused_unless_the_policy_accepts_it(tdx_kbs: ServerProcess) -> None:
    with new_client(tdx_kbs) as client:
        assert_error(attest_sample(client, TeeKey.ec()), 401, "AttestationError", "accept_sample")
        assert_error(get_resource(client), 401, "TokenNotFound")


def test_a_measurement_outside_the_reference_values_is_refused(client: httpx.Client) -> None:
    refused = attest_sample(client, TeeKey.ec(), code="ee" * 32)
    assert_error(refused, 401, "AttestationError", "reference values")
    assert_error(get_resource(client), 401, "TokenNotFound")


def test_sample_evidence_without_the_simulated_document_lacks_the_measurement(
    client: httpx.Client,
) -> None:
    refused = attest_sample(client, TeeKey.ec(), code=None)
    assert_error(refused, 401, "AttestationError", "code_sha256")


def test_a_simulated_document_with_an_edited_measurement_is_refused(client: httpx.Client) -> None:
    key = TeeKey.ec()
    nonce = auth(client)
    evidence = sample_evidence(runtime_digest(key.pubkey(), nonce), code="ee" * 32)
    evidence["simulated"]["measurements"]["code_sha256"] = GOOD_CODE
    refused = client.post("/kbs/v0/attest", json=attestation(nonce, key.pubkey(), evidence))
    assert_error(refused, 401, "AttestationError", "signature is invalid")


def test_an_attestation_replayed_into_a_new_session_is_refused(kbs: ServerProcess) -> None:
    key = TeeKey.ec()
    with new_client(kbs) as first:
        nonce = auth(first)
        captured = attestation(
            nonce, key.pubkey(), sample_evidence(runtime_digest(key.pubkey(), nonce))
        )
        assert first.post("/kbs/v0/attest", json=captured).status_code == 200
    with new_client(kbs) as second:
        auth(second)
        replayed = second.post("/kbs/v0/attest", json=captured)
        assert_error(replayed, 401, "AttestationError", "nonce")
        assert_error(get_resource(second), 401, "TokenNotFound")


def test_evidence_with_only_the_nonce_rewritten_does_not_bind_it(kbs: ServerProcess) -> None:
    key = TeeKey.ec()
    with new_client(kbs) as first:
        nonce = auth(first)
        captured = attestation(
            nonce, key.pubkey(), sample_evidence(runtime_digest(key.pubkey(), nonce))
        )
    with new_client(kbs) as second:
        captured["runtime-data"]["nonce"] = auth(second)
        rewritten = second.post("/kbs/v0/attest", json=captured)
        assert_error(rewritten, 401, "AttestationError", "REPORT_DATA is different")
        assert_error(get_resource(second), 401, "TokenNotFound")


def test_a_different_tee_pubkey_than_the_evidence_binds_is_refused(client: httpx.Client) -> None:
    bound, sent = TeeKey.ec(), TeeKey.ec()
    nonce = auth(client)
    body = attestation(nonce, sent.pubkey(), sample_evidence(runtime_digest(bound.pubkey(), nonce)))
    assert_error(client.post("/kbs/v0/attest", json=body), 401, "AttestationError", "REPORT_DATA")


def test_tee_pubkey_fields_outside_kbs_types_are_dropped_before_hashing(
    client: httpx.Client,
) -> None:
    key = TeeKey.ec()
    nonce = auth(client)
    extended = {**key.pubkey(), "kid": "tee-key", "use": "enc"}
    hashed_whole = attestation(nonce, extended, sample_evidence(runtime_digest(extended, nonce)))
    assert_error(client.post("/kbs/v0/attest", json=hashed_whole), 401, "AttestationError")
    nonce = auth(client)
    hashed_typed = attestation(
        nonce, extended, sample_evidence(runtime_digest(key.pubkey(), nonce))
    )
    assert client.post("/kbs/v0/attest", json=hashed_typed).status_code == 200


def test_an_attested_session_attesting_again_gets_the_same_token(client: httpx.Client) -> None:
    key = TeeKey.ec()
    nonce = auth(client)
    body = attestation(nonce, key.pubkey(), sample_evidence(runtime_digest(key.pubkey(), nonce)))
    first = client.post("/kbs/v0/attest", json=body)
    body["runtime-data"]["nonce"] = "anything: the session is attested already"
    again = client.post("/kbs/v0/attest", json=body)
    assert first.status_code == again.status_code == 200
    assert again.json()["token"] == first.json()["token"]
    assert "kbs-session-id=" in again.headers["set-cookie"]


def test_resource_requests_that_are_not_authorised(kbs: ServerProcess) -> None:
    assert_error(httpx.get(kbs.url + "/kbs/v0/resource/default/key/model"), 401, "TokenNotFound")
    with new_client(kbs) as client:
        auth(client)
        assert_error(get_resource(client), 401, "TokenNotFound")  # challenged, not attested
        assert_error(
            httpx.get(
                kbs.url + "/kbs/v0/resource/default/key/model",
                headers={"Cookie": "kbs-session-id=0123456789abcdef"},
            ),
            401,
            "TokenNotFound",
        )


def test_unknown_forbidden_and_malformed_resources(client: httpx.Client) -> None:
    assert attest_sample(client, TeeKey.ec()).status_code == 200
    assert_error(get_resource(client, "default/key/absent"), 404, "PluginInternalError")
    assert_error(get_resource(client, "default/key/restricted"), 403, "PolicyDeny")
    assert_error(get_resource(client, "default/key"), 404, "InvalidRequestPath")
    assert_error(client.get("/kbs/v0/nothing/here"), 404, "PluginNotFound")
    assert_error(client.post("/kbs/v0/resource/default/key/model"), 401, "AdminAuthAccess")


def test_allowed_claims_release_the_restricted_resource_to_matching_code(
    client: httpx.Client,
) -> None:
    key = TeeKey.ec()
    assert attest_sample(client, key, code=OTHER_CODE).status_code == 200
    response = get_resource(client, "default/key/restricted")
    assert response.status_code == 200, response.text
    assert key.decrypt(response.json()) == RESOURCES["default/key/restricted"]


def test_the_bearer_token_releases_the_resource_without_a_cookie(kbs: ServerProcess) -> None:
    key = TeeKey.ec()
    with new_client(kbs) as client:
        token = attest_sample(client, key).json()["token"]
    url = kbs.url + "/kbs/v0/resource/default/key/model"
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert key.decrypt(response.json()) == MODEL_KEY
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    forged = httpx.get(url, headers={"Authorization": f"Bearer {tampered}"})
    assert_error(forged, 401, "TokenVerifierError")


def test_an_unsupported_key_algorithm_fails_at_the_jwe(client: httpx.Client) -> None:
    key = TeeKey(JWK.generate(kty="EC", crv="P-256"), "ECDH-ES")
    assert attest_sample(client, key).status_code == 200
    assert_error(get_resource(client), 401, "JweError", "not supported")


def test_expired_sessions_and_tokens_are_refused(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, resources=RESOURCES, accept_sample=True)
    with kbs_server_process(policy, session_timeout_s=2) as server:
        key = TeeKey.ec()
        with new_client(server) as challenged:
            nonce = auth(challenged)
            challenged_id = challenged.cookies["kbs-session-id"]
        with new_client(server) as attested:
            token = attest_sample(attested, key).json()["token"]
            attested_id = attested.cookies["kbs-session-id"]
        time.sleep(2.5)  # past the session's expiry (and so the token's)
        body = attestation(
            nonce, key.pubkey(), sample_evidence(runtime_digest(key.pubkey(), nonce))
        )
        late = httpx.post(
            server.url + "/kbs/v0/attest",
            json=body,
            headers={"Cookie": f"kbs-session-id={challenged_id}"},
        )
        assert_error(late, 401, "AttestationError", "session expired")
        url = server.url + "/kbs/v0/resource/default/key/model"
        by_cookie = httpx.get(url, headers={"Cookie": f"kbs-session-id={attested_id}"})
        assert_error(by_cookie, 401, "TokenNotFound")
        by_token = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert_error(by_token, 401, "TokenVerifierError", "expired")


@pytest.mark.parametrize("version", ["0.3.0", "0.4.1", "1.4.0", "0.4.0-rc1", "0.4", "v0.4.0"])
def test_a_protocol_version_other_than_0_4_0_is_refused(kbs: ServerProcess, version: str) -> None:
    response = httpx.post(kbs.url + "/kbs/v0/auth", json={**REQUEST, "version": version})
    assert_error(response, 401, "AttestationError", "Auth failed")
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"version": "0.4.0", "tee": "sample"}).encode(),
        json.dumps({**REQUEST, "tee": "quantum"}).encode(),
    ],
    ids=["not-json", "no-extra-params", "unknown-tee"],
)
def test_a_malformed_request_is_refused(kbs: ServerProcess, body: bytes) -> None:
    response = httpx.post(kbs.url + "/kbs/v0/auth", content=body)
    assert_error(response, 401, "AttestationError", "deserialize Request")


def test_attest_without_a_session_or_with_a_bad_body(kbs: ServerProcess) -> None:
    key = TeeKey.ec()
    body = attestation("nonce", key.pubkey(), sample_evidence(runtime_digest(key.pubkey(), "n")))
    no_cookie = httpx.post(kbs.url + "/kbs/v0/attest", json=body)
    assert_error(no_cookie, 401, "AttestationError", "cookie not found")
    unknown = httpx.post(
        kbs.url + "/kbs/v0/attest", json=body, headers={"Cookie": "kbs-session-id=nope"}
    )
    assert_error(unknown, 401, "AttestationError", "session not found")
    with new_client(kbs) as client:
        auth(client)
        garbled = client.post("/kbs/v0/attest", content=b"{")
        assert_error(garbled, 401, "AttestationError", "deserialize Attestation")


def test_a_tee_this_server_cannot_verify_is_refused_at_attest(kbs: ServerProcess) -> None:
    key = TeeKey.ec()
    with new_client(kbs) as client:
        nonce = auth(client, tee="snp")
        body = attestation(nonce, key.pubkey(), {"attestation_report": "AAAA"})
        assert_error(client.post("/kbs/v0/attest", json=body), 401, "AttestationError", "snp")


def test_a_tdx_quote_binding_the_runtime_data_releases_the_resource(
    tdx_kbs: ServerProcess,
) -> None:
    key = TeeKey.ec()
    with new_client(tdx_kbs) as client:
        nonce = auth(client, tee="tdx")
        evidence = tdx_evidence(runtime_digest(key.pubkey(), nonce))
        attested = client.post("/kbs/v0/attest", json=attestation(nonce, key.pubkey(), evidence))
        assert attested.status_code == 200, attested.text
        claims = token_claims(attested.json()["token"])
        assert claims["tdx_signature_verified"] is False
        assert claims["tcb-status"]["mrtd"] == MRTD.hex()
        response = get_resource(client)
        assert response.status_code == 200, response.text
        assert key.decrypt(response.json()) == MODEL_KEY


def test_a_tdx_quote_not_binding_the_runtime_data_is_refused(tdx_kbs: ServerProcess) -> None:
    key = TeeKey.ec()
    with new_client(tdx_kbs) as client:
        nonce = auth(client, tee="tdx")
        stale = tdx_evidence(runtime_digest(key.pubkey(), "an earlier nonce"))
        refused = client.post("/kbs/v0/attest", json=attestation(nonce, key.pubkey(), stale))
        assert_error(refused, 401, "AttestationError", "REPORT_DATA is different")
        assert_error(get_resource(client), 401, "TokenNotFound")


def test_a_tdx_quote_of_another_td_is_refused(tdx_kbs: ServerProcess) -> None:
    key = TeeKey.ec()
    with new_client(tdx_kbs) as client:
        nonce = auth(client, tee="tdx")
        other = tdx_evidence(runtime_digest(key.pubkey(), nonce), mrtd=bytes(48))
        refused = client.post("/kbs/v0/attest", json=attestation(nonce, key.pubkey(), other))
        assert_error(refused, 401, "AttestationError", "mrtd")


def test_a_policy_edited_while_running_takes_effect(tmp_path: Path) -> None:
    def policy(code: str, resource_needs: str | None = None) -> Path:
        allowed = {"default/key/model": {"code_sha256": [resource_needs]}} if resource_needs else {}
        return write_policy(
            tmp_path,
            resources=RESOURCES,
            accept_sample=True,
            reference_values={"code_sha256": [code]},
            allowed=allowed,
        )

    with kbs_server_process(policy(GOOD_CODE)) as server, new_client(server) as client:
        assert attest_sample(client, TeeKey.ec(), code=OTHER_CODE).status_code == 401
        policy(OTHER_CODE)
        key = TeeKey.ec()
        assert attest_sample(client, key, code=OTHER_CODE).status_code == 200
        assert key.decrypt(get_resource(client).json()) == MODEL_KEY
        policy(OTHER_CODE, resource_needs=GOOD_CODE)  # the resource rule is re-read too
        assert_error(get_resource(client), 403, "PolicyDeny")


def test_trustee_statuses_answer_401_for_denied_and_missing_resources(tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path,
        resources=RESOURCES,
        accept_sample=True,
        allowed={"default/key/restricted": {"code_sha256": [OTHER_CODE]}},
    )
    with kbs_server_process(policy, statuses="trustee") as server, new_client(server) as client:
        assert attest_sample(client, TeeKey.ec()).status_code == 200
        assert_error(get_resource(client, "default/key/restricted"), 401, "PolicyDeny")
        assert_error(get_resource(client, "default/key/absent"), 401, "PluginInternalError")
        assert_error(client.get("/kbs/v0/nothing"), 404, "PluginNotFound")


def test_a_broken_policy_stops_the_server_from_starting(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"resources": {"default/key/model": {"path": "x"}}}))
    expected = pytest.raises(ServerStartError, match=r"resources\.default/key/model\.file")
    with expected, kbs_server_process(policy):
        pass


def test_the_server_logs_one_line_per_request_without_the_secret(kbs: ServerProcess) -> None:
    assert httpx.get(kbs.url + "/healthz").status_code == 200
    log = kbs.log()
    assert "GET /healthz 200" in log
    assert MODEL_KEY.hex() not in log and base64.b64encode(MODEL_KEY).decode() not in log


# --- the CDH resource endpoint --------------------------------------------------------------------


def test_the_cdh_server_serves_raw_bytes_like_api_server_rest(tmp_path: Path) -> None:
    secret = tmp_path / "model-key"
    secret.write_bytes(MODEL_KEY)
    with cdh_server_process({"default/key/model": secret}, tmp_path) as cdh:
        assert cdh.url.startswith("http://127.0.0.1:")
        served = httpx.get(cdh.url + "/cdh/resource/default/key/model")
        assert served.status_code == 200
        assert served.headers["content-type"] == "application/octet-stream"
        assert served.content == MODEL_KEY
        assert httpx.get(cdh.url + "/cdh/resource/default/key/absent").status_code == 404
        assert httpx.post(cdh.url + "/cdh/resource/default/key/model").status_code == 405
        assert httpx.get(cdh.url + "/aa/token").status_code == 404
        assert httpx.get(cdh.url + "/info").json()["feature"] == "resource"
        assert "GET /cdh/resource/default/key/model 200" in cdh.log()
