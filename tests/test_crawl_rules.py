"""The crawl's pure parts: the keyword file, engine parsers, X-Robots-Tag, Retry-After, address checks, robots.txt."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from fusekit.crawl.engines import ENGINES, parse_baidu, parse_bing, parse_flickr, parse_google, public_url
from fusekit.crawl.keywords import PACKAGED, load_keywords, parse_keywords
from fusekit.crawl.politeness import Politeness, Refused, Rules, opt_out, retry_after_seconds
from fusekit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PAPER = Path("/work/shared/seeds/003_ecd1ba7cff1b861d.txt")


def test_packaged_keywords_equal_the_repository_file() -> None:
    assert PACKAGED.read_bytes() == (ROOT / "keywords.yaml").read_bytes()


def test_keywords_hold_every_word_of_the_paper() -> None:
    keywords = load_keywords(ROOT / "keywords.yaml")
    paper = {  # section 2.2, verbatim
        "neutral": "indifferent, nonaligned, diaphanous",
        "surprise": "amazed, astonishment, astounded, surprised, astonished, besurprised, beamazed, stunned, "
                    "stupefied, wonder, marvelousness, astonishing, portentous",
        "sad": "unhappiness, sorrow, grief, tragedy, depression, the blues, misery, melancholy, poignancy, "
               "despondency, bleakness, heavy-heart, dejection, wretchedness, gloominess, mournfulness, dolour, "
               "dolefulness, cheerlessness, sorrowfulness",
        "happy": "pleased, delighted, content, contented, thrilled, glad, blessed, blest, sunny, cheerful, jolly, "
                 "merry, ecstatic, gratified, jubilant, joyous, joyful, elated",
        "fear": "dread, horror, panic, terror, dismay, awe, fright, tremors, qualms, consternation, alarm, timidity, "
                "fearfulness",
        "disgust": "sicken, outrage, offend, revolt, put off, repel, nauseate",
        "angry": "rage, passion, outrage, temper, fury, resentment, irritation, wrath, indignation, annoyance, "
                 "agitation, antagonism, displeasure",
    }
    if PAPER.is_file():  # the copy of the paper in the project's shared folder, when present
        text = PAPER.read_text()
        for heading, emotion in [("Neutral", "neutral"), ("Surprise", "surprise"), ("Sadness", "sad"),
                                 ("Happy", "happy"), ("Fear", "fear"), ("Disgust", "disgust"), ("Anger", "angry")]:
            line = re.search(rf"^{heading} (.*)\.$", text, re.MULTILINE).group(1)
            assert line == paper[emotion]
    for emotion, words in paper.items():
        assert keywords.emotions[emotion][0] == emotion  # the class name itself first
        assert list(keywords.emotions[emotion][-len(words.split(", ")):]) == words.split(", ")
    assert keywords.emotions["contempt"] == ()
    assert keywords.query("bing", "put off") == "put off face"


@pytest.mark.parametrize("text, message", [
    ("emotions:\n  happy: [glad, glad]\n", "kw.yaml, line 2: 'glad' is listed twice under happy"),
    ("emotions:\n  happy: [glad]\n  joyy: [a]\n", "kw.yaml, line 3: unknown emotion 'joyy' (expected one of angry, "
                                                 "disgust, fear, happy, sad, surprise, neutral, contempt)"),
    ("emotions:\n  happy: [glad\n  sad: [x]\n", "kw.yaml, line 3: not valid YAML"),
    ("emotion:\n  happy: [glad]\n", "kw.yaml, line 1: unknown key 'emotion' (expected version, templates, emotions)"),
    ("templates:\n  bing: '{kw} face'\nemotions: {}\n", "kw.yaml, line 2: the template '{kw} face' must contain "
                                                       "{keyword} and no other {field}"),
    ("emotions:\n  happy: glad\n", "kw.yaml, line 2: the keywords of happy must be a list, e.g. [happy, ...]"),
    ("emotions:\n  happy: [glad, [x]]\n", "kw.yaml, line 2: a keyword of happy must be a plain text value"),
    ("", "kw.yaml: the file is empty; it needs an `emotions:` mapping"),
])
def test_malformed_keyword_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_keywords(text, "kw.yaml")
    assert str(caught.value).startswith(message)


def test_keyword_file_choice(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_keywords().path == str(PACKAGED)
    (tmp_path / "keywords.yaml").write_text("emotions:\n  sad: [blue]\n")
    assert load_keywords().emotions["sad"] == ("blue",) and load_keywords().emotions["happy"] == ()
    with pytest.raises(ConfigError, match="--keywords nope.yaml does not exist"):
        load_keywords("nope.yaml")


def test_bing_parser_reads_the_whole_m_json() -> None:
    def item(meta: dict) -> str:
        return f'<div class="imgpt"><a class="iusc" m="{html.escape(json.dumps(meta, separators=(",", ":")))}"></a></div>'

    page = ("<html><body>" + item({"murl": "https://a.example/x.png?w=1", "purl": "https://a.example/p", "t": "a.jpg"})
            + item({"purl": "https://b.example/"})  # no murl: skipped
            + item({"murl": "https://c.example/y.jpg"}) + "</body></html>").encode()
    results = parse_bing(page, 35)
    assert [(r.url, r.rank, r.page_url) for r in results] == [("https://a.example/x.png?w=1", 35, "https://a.example/p"),
                                                             ("https://c.example/y.jpg", 36, None)]
    assert parse_bing(b"<html>captcha</html>", 0) == []


def test_other_parsers_always_return_lists() -> None:
    assert parse_baidu(b'{"antiFlag":1,"message":"forbid"}', 0) == []
    assert [r.url for r in parse_baidu(b'{"data":[{"hoverURL":"http://h/x.jpg"},{}]}', 0)] == ["http://h/x.jpg"]
    assert parse_google(b"<html>consent</html>", 0) == []
    assert [r.url for r in parse_google(b'<script>["https://i.example/a.jpg",1,2]</script>', 100)] == [
        "https://i.example/a.jpg"]
    answer = {"stat": "ok", "photos": {"photo": [{"id": "7", "owner": "o", "url_z": "https://live.staticflickr.com/z.jpg",
                                                  "title": "t"}, {"id": "8"}]}}
    (result,) = parse_flickr(json.dumps(answer).encode(), 0)
    assert (result.url, result.page_url) == ("https://live.staticflickr.com/z.jpg", "https://www.flickr.com/photos/o/7")
    assert parse_flickr(b'{"stat":"fail"}', 0) == []
    assert "api_key" not in public_url(ENGINES["flickr"].page_url("sad face", 0, {"api_key": "SECRET"}))


def test_keyword_is_url_encoded() -> None:
    url = ENGINES["bing"].page_url("fear & anxiety face", 0)
    assert "q=fear+%26+anxiety+face" in url


def test_x_robots_tag() -> None:
    assert opt_out({"X-Robots-Tag": "noai"}) == "noai"
    assert opt_out({"X-Robots-Tag": "noindex, NoImageAI"}) == "noimageai"
    assert opt_out({"X-Robots-Tag": "otherbot: noai"}) is None
    assert opt_out({"X-Robots-Tag": "fusekit: noai"}) == "noai"
    assert opt_out({"X-Robots-Tag": "otherbot: noindex, fusekit: noimageai"}) == "noimageai"
    assert opt_out({"X-Robots-Tag": "unavailable_after: 25 Jun 2010 15:00:00 PST, noai"}) == "noai"
    assert opt_out({"X-Robots-Tag": "noindex"}) is None and opt_out({}) is None


def test_retry_after() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_address_checks_need_no_network() -> None:
    strict = Politeness(Rules(user_agent="t", only=("127.0.0.1/32",), allow=("127.0.0.1/32",)))
    strict.check_url("http://127.0.0.1:8080/x.jpg")
    for url, reason in [("http://example.com/x.jpg", "address_refused"), ("http://10.0.0.1/x", "address_refused"),
                        ("file:///etc/passwd", "unsupported_scheme"), ("ftp://127.0.0.1/x", "unsupported_scheme"),
                        ("http://[::1]/x", "address_refused")]:
        with pytest.raises(Refused) as caught:
            strict.check_url(url)
        assert caught.value.reason == reason
    default = Politeness(Rules(user_agent="t"))
    for url in ("http://127.0.0.1/x", "http://192.168.1.1/x", "http://169.254.169.254/latest/meta-data",
                "http://[::ffff:10.0.0.1]/x", "http://0.0.0.0/x"):
        with pytest.raises(Refused, match="non-public address"):
            default.check_url(url)
    default.check_url("http://93.184.215.14/x.jpg")  # a public address literal: no DNS needed


def test_robots_rules() -> None:
    politeness = Politeness(Rules(user_agent="t"))
    body = "User-agent: *\nDisallow: /private/\n\nUser-agent: fusekit\nDisallow: /nofusekit/\n"
    fetch = {"http://a.test": (200, body), "http://b.test": (404, ""), "http://c.test": (503, "")}
    assert politeness.robots_allows("http://a.test/img/x.jpg", lambda u: fetch["http://a.test"])
    assert not politeness.robots_allows("http://a.test/nofusekit/x.jpg", lambda u: 1 / 0)  # cached: no refetch
    assert politeness.robots_allows("http://a.test/private/x.jpg", lambda u: 1 / 0)  # fusekit's own group applies
    assert politeness.robots_allows("http://b.test/any", lambda u: fetch["http://b.test"])  # no robots.txt
    assert not politeness.robots_allows("http://c.test/any", lambda u: fetch["http://c.test"])  # unreachable
    assert politeness.stats.robots_fetched == 3
