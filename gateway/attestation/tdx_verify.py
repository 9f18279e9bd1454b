"""Verify an Intel TDX quote offline with dcap-qvl and Intel collateral passed as a file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ACCEPTED_STATUSES = frozenset({"UpToDate"})


class TdxVerificationError(Exception):
    pass


@dataclass(frozen=True)
class TdxVerdict:
    status: str
    advisory_ids: list[str]


def verify_tdx_quote(
    quote: bytes,
    collateral_json: str,
    *,
    now: int,
    accepted_statuses: frozenset[str] = ACCEPTED_STATUSES,
) -> TdxVerdict:
    """Check the quote's signature chain to Intel's root and its TCB status at ``now``."""
    try:
        import dcap_qvl
    except ImportError as exc:
        raise TdxVerificationError(
            "TDX verification needs dcap-qvl (pip install 'confidential-gateway[verify]')"
        ) from exc
    try:
        collateral = dcap_qvl.QuoteCollateralV3.from_json(collateral_json)
        report = dcap_qvl.verify(quote, collateral, now)
    except (ValueError, RuntimeError) as exc:
        raise TdxVerificationError(f"the TDX quote did not verify: {exc}") from None
    verdict = TdxVerdict(str(report.status), list(report.advisory_ids))
    if verdict.status not in accepted_statuses:
        raise TdxVerificationError(
            f"the TDX quote's TCB status is {verdict.status} "
            f"(advisories {verdict.advisory_ids}); accepted: {sorted(accepted_statuses)}"
        )
    return verdict


def load_collateral(path: Path) -> str:
    text = path.read_text()
    json.loads(text)  # fail early on a file that is not JSON
    return text
