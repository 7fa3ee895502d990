"""The moderation dashboard (/ui) in headless Chromium (Debian's `chromium`, driven by Playwright):
drop a meme, see the three tasks with scores and the OCR text; classify a batch and open a results
file; work the review queue with the keyboard. Screenshots are kept in ``test-artifacts/`` (or
``$MEMOTION_TEST_ARTIFACTS``)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.access.keys import hash_key
from tests.gateway_fixtures import photo_jpeg, render_meme, start_gateway
from tests.tooling import tool_missing

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("MEMOTION_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def page(gateway_url: str) -> Iterator[object]:
    if CHROMIUM is None:
        tool_missing("no chromium on this machine: `make system-packages` installs Debian's (needs apt)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{gateway_url}/ui")
        yield page
        browser.close()


def test_drop_a_meme(page, gateway_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    meme = render_meme("WHEN THE CODE", "FINALLY COMPILES")
    path = tmp_path / "meme.png"
    path.write_bytes(meme)
    page.wait_for_selector("#status:has-text('ready')")
    page.set_input_files("#file-input", str(path))
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)

    expected = httpx.post(
        f"{gateway_url}/v1/classify", files={"image": ("meme.png", meme, "image/png")}, timeout=120
    ).json()
    assert page.inner_text("#task-a-label") == expected["task_a"]["label"]
    assert page.locator("#task-a-scores .row").count() == len(expected["task_a"]["scores"])
    assert page.inner_text("#task-a-scores .row.chosen").startswith(expected["task_a"]["label"])
    chips = page.locator("#task-b .chip")
    assert chips.count() == len(expected["task_b"])
    flagged = sorted(page.locator("#task-b .chip.on").evaluate_all("els => els.map(e => e.dataset.emotion)"))
    assert flagged == sorted(e for e, on in expected["task_b"].items() if on)
    assert page.locator("#task-c .head").count() == len(expected["task_c"])
    for head, prediction in expected["task_c"].items():
        assert (
            page.inner_text(f"#task-c .head[data-head='{head}'] h3")
            == f"{head}: {prediction['label']} ({prediction['code']})"
        )
    assert page.inner_text("#ocr-text").upper().split() == ["WHEN", "THE", "CODE", "FINALLY", "COMPILES"]
    assert page.inner_text("#text-source") == "read by OCR"
    assert page.locator("#text-steps li").count() >= 3  # input, clean, language
    assert page.inner_text("#model-version") == expected["model_version"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-classify.png"), full_page=True)


def test_bad_upload_shows_the_error(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "not-an-image.png"
    path.write_bytes(b"plain text pretending to be a png")
    page.set_input_files("#file-input", str(path))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert page.inner_text("#error").startswith("unsupported_image (415)")


def test_batch_results(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.click("#tab-batch")
    files = []
    for name, data in (("a.jpg", photo_jpeg(seed=1)), ("b.jpg", photo_jpeg(seed=2)), ("bad.jpg", b"nope")):
        (tmp_path / name).write_bytes(data)
        files.append(str(tmp_path / name))
    page.set_input_files("#batch-files", files)
    page.wait_for_selector("#batch-table tbody tr", timeout=120_000)
    assert page.locator("#batch-table tbody tr").count() == 3
    assert page.locator("#batch-table tbody tr.row-error").count() == 1
    assert "unsupported_image" in page.inner_text("#batch-table tbody tr.row-error")
    assert page.inner_text("#batch-summary").startswith("3 memes")

    # A `memotion score` results file: 2 memes and an error, one flagged offensive.
    common = {
        "status": "ok",
        "model_version": "v1",
        "text_source": "request",
        "language": "en",
        "c_offensive": "not_offensive",
        "c_offensive_code": "NO",
    }
    records = [
        {
            "id": "m1",
            **common,
            "text": "nice day",
            "sentiment": "positive",
            "sentiment_score": 0.7,
            "b_offensive": False,
            "b_offensive_score": 0.2,
        },
        {
            "id": "m2",
            **common,
            "text": "you clown",
            "sentiment": "negative",
            "sentiment_score": 0.6,
            "b_offensive": True,
            "b_offensive_score": 0.9,
        },
        {"id": "m3", "status": "error", "error_code": "corrupt_image", "error_message": "damaged"},
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    page.set_input_files("#results-input", str(results))
    page.wait_for_function("document.querySelectorAll('#batch-table tbody tr').length === 3")
    assert page.inner_text("#batch-summary").startswith("3 memes · 1 with an emotion flagged · 1 errors")
    page.select_option("#batch-filter", "flagged")
    assert page.locator("#batch-table tbody tr").count() == 1
    assert "you clown" in page.inner_text("#batch-table tbody tr")
    page.select_option("#batch-filter", "all")
    page.select_option("#batch-sort", "b_offensive_score")
    assert page.locator("#batch-table tbody tr").first.inner_text().split("\t")[1] == "m2"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-batch.png"), full_page=True)


# --- the review queue --------------------------------------------------------------------------

MODERATOR = "mk_ui-moderator-key-0123456789abcdef"


@pytest.fixture(scope="module")
def review_gateway(model_repository: Path, tmp_path_factory) -> Iterator[str]:
    """A gateway whose default policy queues every meme, with a moderator (admin) staff key."""
    database = tmp_path_factory.mktemp("ui-review") / "memotion.db"
    staff = [{"name": "moderator-1", "sha256": hash_key(MODERATOR), "role": "admin"}]
    with start_gateway(
        model_repository, ocr="none", database_url=f"sqlite:///{database}", admin_keys=json.dumps(staff)
    ) as url:
        headers = {"Authorization": f"Bearer {MODERATOR}"}
        policy = {"rules": [{"head": "humorous", "threshold": 0.0, "action": "review"}]}  # every meme: review
        httpx.put(f"{url}/v1/admin/policies/queue-all", json=policy, headers=headers).raise_for_status()
        httpx.put(f"{url}/v1/admin/assignments/*", json={"policy": "queue-all"}, headers=headers).raise_for_status()
        yield url


def _classify(url: str, image: bytes, text: str) -> dict:
    body = {"image": base64.b64encode(image).decode(), "text": text}
    return httpx.post(f"{url}/v1/classify", json=body, timeout=60).json()["decision"]


def test_review_queue_with_the_keyboard(page, review_gateway: str) -> None:  # type: ignore[no-untyped-def]
    staff = {"Authorization": f"Bearer {MODERATOR}"}
    meme = render_meme("ME EXPLAINING", "THE JOKE AGAIN")
    first = _classify(review_gateway, meme, "me explaining the joke again")["review_id"]
    decided = {"action": "block", "labels": {"sentiment": "negative"}, "note": "pile-on"}
    httpx.post(f"{review_gateway}/v1/reviews/{first}/decision", json=decided, headers=staff).raise_for_status()
    repost = _classify(review_gateway, meme, "same picture, other words")
    assert repost["repost_of"]["review_id"] == first
    other = _classify(review_gateway, photo_jpeg(seed=9), "a landscape")["review_id"]

    page = page.context.browser.new_page(viewport={"width": 1280, "height": 1000})  # the module's browser
    try:
        page.goto(f"{review_gateway}/ui")
        page.click("#tab-review")
        page.fill("#staff-key", MODERATOR)
        page.click("#queue-load")
        page.wait_for_selector(f"#item-id:has-text('{repost['review_id']}')")
        assert page.locator("#queue-list li").count() == 2
        assert "review threshold: humorous" in page.inner_text("#item-reasons")
        assert page.locator(f"#item-similar li[data-review='{first}']").count() == 1
        assert "same file" in page.inner_text("#item-similar")
        assert page.locator("#item-thumbnail").is_visible()
        page.select_option("#item-labels select[data-head='sentiment']", "positive")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-review-queue.png"), full_page=True)
        page.locator("body").click(position={"x": 5, "y": 300})  # focus off the select: keys go to the page
        page.keyboard.press("b")
        page.wait_for_selector(f"#item-id:has-text('{other}')")
        page.keyboard.press("c")
        page.wait_for_selector("#item-status:has-text('claimed by moderator-1')")
        page.keyboard.press("a")
        page.wait_for_selector("#queue-summary:has-text('0 left')")
    finally:
        page.close()

    first_answer = httpx.get(f"{review_gateway}/v1/reviews/{repost['review_id']}", headers=staff).json()
    assert (first_answer["decided_action"], first_answer["decided_by"]) == ("block", "moderator-1")
    assert first_answer["corrected_labels"]["sentiment"] == "positive"
    second = httpx.get(f"{review_gateway}/v1/reviews/{other}", headers=staff).json()
    assert (second["status"], second["decided_action"], second["claimed_by"]) == ("decided", "allow", "moderator-1")
