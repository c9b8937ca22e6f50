"""The web console at `/` in headless Chromium (Debian `chromium` and `chromium-driver`, driven
by selenium): the page loads from the binary, lists the installed models, and a chat message
gets a streamed reply from the real daemon with the default model, and a long streaming
request started from Python shows up in the process table and is killed from its button (the
Python stream ends with the killed error). With API keys, the page gets nothing until a key is
typed into its field, which then rides on every request and survives a reload of the tab. A
screenshot is kept as a test artifact (under $LLMASOS_TEST_ARTIFACTS when set, else pytest's tmp dir; its path is
printed)."""
import json
import os
import re
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from serve_util import DEFAULT_REF, Daemon, LongStream, cli, default_home, serving, tiny_home

WAIT_S = 60  # an upper bound for the page to show what it is waiting for, not a timing


def find_binary(*names):
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if path:
            return path
    pytest.fail(f"none of {names} is installed: scripts/setup installs chromium and chromium-driver")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    home = default_home(tmp_path_factory.mktemp("console"))
    with serving(home, "--models", DEFAULT_REF, "--threads", "2", "--parallel", "2") as d:
        yield d


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = find_binary("chromium", "chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(find_binary("chromedriver")), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def artifacts(tmp_path):
    where = os.environ.get("LLMASOS_TEST_ARTIFACTS")
    path = os.path.join(where, "console") if where else str(tmp_path)
    os.makedirs(path, exist_ok=True)
    return path


def script_errors(driver):
    """The page's JavaScript errors so far (failed fetches of a missing route are not)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


def test_serve_prints_the_console_address(daemon):
    printed = [m.group(1) for line in daemon.log for m in [re.search(r"^console: (\S+)$", line)] if m]
    assert printed == [daemon.url + "/"]


def test_chat_round_trip_streams_a_reply(daemon, browser, artifacts):
    browser.get(daemon.url + "/")
    assert browser.title == "LLMasOS console"
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: DEFAULT_REF in [o.get_attribute("value") for o in Select(d.find_element(By.ID, "model")).options])
    Select(browser.find_element(By.ID, "model")).select_by_value(DEFAULT_REF)
    max_tokens = browser.find_element(By.ID, "max-tokens")
    max_tokens.clear()
    max_tokens.send_keys("24")
    browser.find_element(By.ID, "prompt").send_keys("What is the capital of France?")
    # Counts the reply's updates: a streamed reply grows piece by piece, not in one go.
    browser.execute_script("""
      window.replyUpdates = 0;
      new MutationObserver((records) => {
        for (const r of records) {
          if (r.target.matches && r.target.matches('.msg.assistant .content') && r.addedNodes.length) window.replyUpdates++;
        }
      }).observe(document.getElementById('transcript'), {childList: true, subtree: true});""")
    browser.find_element(By.ID, "send").click()

    user = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".msg.user .content")))
    assert user.text == "What is the capital of France?"
    # The reply is marked done when its stream ends; an error would be its own message.
    reply = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".msg.assistant.done .content")))
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.error") == []
    assert reply.text.strip(), "the streamed reply is empty"
    assert browser.execute_script("return window.replyUpdates") >= 2, "the reply did not stream"
    assert browser.find_element(By.ID, "send").is_enabled()
    assert script_errors(browser) == []

    shot = os.path.join(artifacts, "console-chat.png")
    assert browser.save_screenshot(shot)
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    print(f"console screenshot: {shot}")


def test_a_process_appears_in_the_table_and_its_kill_button_ends_it(daemon, browser, artifacts):
    browser.get(daemon.url + "/")
    wait = WebDriverWait(browser, WAIT_S)
    stream = LongStream(daemon, "Once upon a time")
    try:
        # The page polls the table every second; the row is the one running process.
        row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#processes tbody tr[data-state=running]")))
        pid = row.get_attribute("data-id")
        assert re.fullmatch(r"\d+-\d+", pid), pid
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        assert cells[0] == pid and cells[1].startswith(DEFAULT_REF.split(":")[0] + "@") and cells[3] == "running"
        assert wait.until(lambda d: stream.events), "no token streamed before the kill"

        shot = os.path.join(artifacts, "console-processes.png")
        assert browser.save_screenshot(shot)
        print(f"console screenshot: {shot}")

        # Renice from the row: the daemon's table carries the new priority.
        priority = row.find_element(By.CSS_SELECTOR, "input.priority")
        priority.clear()
        priority.send_keys("5")
        row.find_element(By.CSS_SELECTOR, "button.renice").click()
        wait.until(lambda d: daemon.get("/os/processes/" + pid)["priority"] == 5)

        row.find_element(By.CSS_SELECTOR, "button.kill").click()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'#processes tbody tr[data-id="{pid}"]'))
        events = stream.finish()
    finally:
        stream.conn.close()
    assert "error" in events[-1] and "killed" in events[-1]["error"]["message"], events[-1]
    assert browser.find_element(By.ID, "status").text == ""
    assert script_errors(browser) == []


def test_with_keys_the_page_sends_the_key_typed_into_its_field(tmp_path, browser):
    home = tiny_home(tmp_path)
    key = json.loads(cli(home, "keys", "create", "--json", "--scopes", "infer,models,admin").stdout)["key"]
    d = Daemon(home, "--models", "tiny", "--threads", "1", "--ctx-size", "256")
    try:
        browser.get(d.url + "/")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        wait = WebDriverWait(browser, WAIT_S)
        # Without the key: the page loads (it is public) but every API call is refused.
        wait.until(lambda b: b.find_element(By.ID, "status").text.startswith("models:"))
        assert Select(browser.find_element(By.ID, "model")).options == []
        wait.until(lambda b: "processes:" in b.find_element(By.ID, "processes-note").text)

        field = browser.find_element(By.ID, "key")
        field.send_keys(key)
        browser.find_element(By.ID, "prompt").click()  # leaving the field commits it
        wait.until(lambda b: "tiny:latest" in [o.get_attribute("value") for o in Select(b.find_element(By.ID, "model")).options])
        assert browser.execute_script("return sessionStorage.getItem('llmasos.key')") == key
        wait.until(lambda b: b.find_element(By.ID, "processes-note").text == "no live processes")

        # The key survives a reload of the tab and carries a chat.
        browser.refresh()
        assert browser.find_element(By.ID, "key").get_attribute("value") == key
        wait.until(lambda b: "tiny:latest" in [o.get_attribute("value") for o in Select(b.find_element(By.ID, "model")).options])
        Select(browser.find_element(By.ID, "model")).select_by_value("tiny:latest")
        max_tokens = browser.find_element(By.ID, "max-tokens")
        max_tokens.clear()
        max_tokens.send_keys("8")
        browser.find_element(By.ID, "prompt").send_keys("Hello")
        browser.find_element(By.ID, "send").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".msg.assistant.done")))
        assert browser.find_elements(By.CSS_SELECTOR, ".msg.error") == []
        assert browser.find_element(By.ID, "status").text == ""
    finally:
        browser.execute_script("sessionStorage.clear()")
        assert d.stop() == 0, "".join(d.log)
