#!/usr/bin/env python3
"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium
through Debian's chromedriver logs in to horizon as admin, switches to the project,
opens Project > Compute > Instances, checks that the server is listed, and saves a
screenshot.

Usage: horizon-browser-test.py DASHBOARD_URL PROJECT_ID SERVER_NAME SCREENSHOT
The admin password comes from the environment (ADMIN_PASSWORD), never from argv.
Exits 1 with the page's title and URL when a step fails (the screenshot is saved
in any case).
"""

import os
import sys
import tempfile

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TIMEOUT = 60


def main():
    base, project_id, server, shot = sys.argv[1:5]
    base = base.rstrip("/") + "/"
    password = os.environ["ADMIN_PASSWORD"]
    profile = tempfile.mkdtemp(prefix="horizon-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    ok = False
    try:
        wait = WebDriverWait(driver, TIMEOUT)
        driver.get(base + "auth/login/")
        wait.until(ec.presence_of_element_located((By.ID, "id_username")))
        driver.find_element(By.ID, "id_username").send_keys("admin")
        driver.find_element(By.ID, "id_password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(lambda d: "/auth/login" not in d.current_url)
        # admin's first project may be another one: switch to the server's.
        driver.get(f"{base}auth/switch/{project_id}/?next={base}project/instances/")
        wait.until(ec.presence_of_element_located((By.ID, "instances")))
        wait.until(lambda d: server in d.find_element(By.ID, "instances").text)
        print(f"logged in as admin; Instances lists {server} ({driver.title})")
        ok = True
    except TimeoutException:
        print(f"timed out at {driver.current_url!r} ({driver.title!r})", file=sys.stderr)
    finally:
        driver.save_screenshot(shot)
        print(f"screenshot: {shot}")
        driver.quit()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
