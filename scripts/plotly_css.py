"""Write plotly.js's own CSS to static files, so the billing pages can draw charts under a CSP without
'unsafe-inline' styles.

plotly.js injects its stylesheet as a <style> element when it loads (blocked by `style-src 'self'`); it skips
that when the page already has an element `#plotly.js-style-global.no-inline-styles`, and skips its bundled
maplibre stylesheet (maps, which the portal does not draw) when an element with that stylesheet's id exists.
The billing pages link the file this script writes under the first id and carry an empty <meta> with the
second (templates/_plotly_head.html).

Run after upgrading static/vendor/plotly.min.js (needs Chromium and Playwright):
    .venv/bin/python scripts/plotly_css.py
It prints the maplibre stylesheet id; if it changed, update the template.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor"


def main() -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless=new", "--no-sandbox"])
        page = browser.new_page()
        page.set_content("<html><head></head><body></body></html>")
        page.add_script_tag(content=(VENDOR / "plotly.min.js").read_text())
        global_css = page.evaluate("""() => Array.from(document.getElementById('plotly.js-style-global').sheet
            .cssRules).map(r => r.cssText).reverse().join('\\n')""")  # plotly inserts each rule at index 0
        others = page.evaluate("""() => Array.from(document.querySelectorAll('style'))
            .filter(s => s.id !== 'plotly.js-style-global').map(s => [s.id, s.textContent])""")
        browser.close()
    (VENDOR / "plotly.css").write_text(f"/* plotly.js's global rules, written by scripts/plotly_css.py */\n"
                                       f"{global_css}\n")
    for style_id, _ in others:
        print(f"maplibre stylesheet id: {style_id}")


if __name__ == "__main__":
    main()
