"""The console in a real browser, as an operator uses it: log in, read the overview, find a
person, open them, retry their quarantined write.

Headless Chromium from the distribution (``chromium`` + ``chromium-driver``),
driven by Selenium through ``/usr/bin/chromedriver``, so nothing is downloaded.
``.ci/run`` installs both when missing; in CI a missing browser fails the test
rather than skipping it.  The screenshots of the overview and the person's
page land in the test's own directory; ``SYNCD_SCREENSHOTS=docs`` writes them to
``docs/`` instead, for the README (a plain test run leaves the checkout untouched).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.test_web import TOKEN, Site, _build

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, DRIVER) if not os.path.exists(p)]
    if not missing:
        return
    message = f"headless browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(60)
    # A click that navigates returns before the next page is there: each step below
    # looks first for an element only the next page has, waiting for it to appear.
    driver.implicitly_wait(15)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    _need_browser()
    yield from _build(tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}", monkeypatch)


def test_log_in_find_a_person_retry_their_write_and_undo_a_change(
    site: Site, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    shots = DOCS if os.environ.get("SYNCD_SCREENSHOTS") == "docs" else tmp_path
    shots.mkdir(exist_ok=True)
    with chromium() as driver:
        d: Any = driver
        d.get(site.url + "/")
        assert "Log in" in d.title
        d.find_element(By.ID, "token").send_keys(TOKEN)
        d.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()

        systems = d.find_element(By.ID, "systems").text
        assert "Sync health" in d.find_element(By.TAG_NAME, "h1").text
        assert "crm" in systems and "billing" in systems and "ok" in systems
        d.save_screenshot(str(shots / "console-overview.png"))

        d.find_element(By.LINK_TEXT, "People").click()
        box = d.find_element(By.ID, "q")
        box.send_keys("lovelace")
        box.submit()
        results = d.find_element(By.ID, "results")
        results.find_element(By.PARTIAL_LINK_TEXT, "Ada Lovelace").click()

        copies = d.find_element(By.ID, "copies").text
        assert d.find_element(By.TAG_NAME, "h1").text.startswith("Ada Lovelace")
        assert "ada@acme.example" in copies
        failures = d.find_element(By.ID, "failures")
        assert "quarantined" in failures.text
        d.save_screenshot(str(shots / "console-person.png"))

        failures.find_element(By.XPATH, ".//button[text()='Retry']").click()
        flash = d.find_element(By.CSS_SELECTOR, "p.flash").text
        assert flash == "1 retried"
        assert "quarantined" not in d.find_element(By.ID, "failures").text

        # Undo the phone Ada arrived with: an operator change, shown on her page at once.
        row = d.find_element(By.XPATH, "//table[@id='history']//tr[td[3][text()='phone']]")
        row.find_element(By.XPATH, ".//button[text()='Undo']").click()
        undone = d.find_element(By.XPATH, "//table[@id='history']//tr[td[5][text()='operator']]")
        assert "phone" in undone.text

    assert site.store.load_state().goldens[site.ada].fields["phone"] == ""

    assert ("billing", site.ada) not in site.quarantined()
    assert (shots / "console-overview.png").stat().st_size > 10_000
    assert (shots / "console-person.png").stat().st_size > 10_000
