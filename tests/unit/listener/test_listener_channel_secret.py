from __future__ import annotations

import pytest

from cdsflow.listener.domain import bearer_secret_matches

SECRET = "s3cret-channel-token-abcdef"


@pytest.mark.parametrize("header", [f"Bearer {SECRET}", f"bearer {SECRET}", f"  Bearer  {SECRET} "])
def test_the_channel_secret_is_accepted(header: str) -> None:
    assert bearer_secret_matches(header, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        f"Basic {SECRET}",
        f"Bearer {SECRET}x",
        f"Bearer {SECRET[:-1]}",
        "Bearer s3cret-chännel-token-abcdef",
        SECRET,
    ],
)
def test_anything_else_is_refused(header: str | None) -> None:
    assert not bearer_secret_matches(header, SECRET)
