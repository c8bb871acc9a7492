/**
 * Hostile cases against the pat-push pattern in Chromium. Each case sends
 * message frames through a push server stand-in to a page that loads the
 * bundle, and the fragments come from a real HTTP server. A second server
 * on another loopback address plays the attacker's origin.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { launchChromium } from "../e2e/browser.ts";
import {
  buildBundle,
  pageHtml,
  pause,
  startFixtureServer,
  startPushStandIn,
  type FixtureServer,
  type PushStandIn,
  type RecordedEvent,
} from "../client/test-support.ts";
import {
  activeContentUnder,
  clickLinks,
  foreignRequests,
  openWatchedPage,
  PAYLOAD,
  payloadTraces,
} from "../patterns/push/hostile-page.ts";
import type { HostileCase } from "./support.ts";

/**
 * Message frame fields a case sends. In strings, `FOREIGN`, `FOREIGN_HOST`,
 * `FOREIGN_PORT`, `FOREIGN_WS`, `PAGE_HOST` and `PAYLOAD` are replaced.
 */
interface FrameFields {
  html?: string;
  event?: string;
  data?: unknown;
}

interface PatternAttack {
  /** Frames sent one after another. */
  frames: FrameFields[];
}

interface PatternExpected {
  /** Event that must fire on the page. */
  event: string;
  /** `detail.reason` of the first such event, when the event has one. */
  reason?: string | RegExp;
  /** How many of these events must fire, 1 unless given. `pat-inject-success` may fire more. */
  count?: number;
  /** Whether the content of `#t` changes. A changed `#t` must hold no active content. */
  target: "unchanged" | "changed";
}

const EVENT_TYPES = [
  "pat-inject-success",
  "pat-inject-missingSource",
  "pat-inject-missingTarget",
  "patpush:fetch-failed",
  "patpush:invalid-snippet",
  "patpush:url-rejected",
];

const PAGE_BODY = `
<div id="t"><p>old</p></div>
<div id="ok">waiting</div>
<script id="idle"></script>`;

const TARGET_HTML = "<p>old</p>";

/** Fragments served by the page's own server, by path. */
const FRAGMENTS: Record<string, string> = {
  "/valid": `<div id="ok-src">applied</div>`,
  "/clean": `<div id="s"><p>clean</p></div>`,
  "/text": `<div id="s">window.pwned = 1</div>`,
  "/handlers": `<div id="s">
    <script>PAYLOAD</script>
    <img src="/missing.png" onerror="PAYLOAD">
    <svg onload="PAYLOAD"><circle r="1" onmouseover="PAYLOAD"/></svg>
    <input autofocus onfocus="PAYLOAD">
    <details open ontoggle="PAYLOAD"><summary>x</summary></details>
    <video><source onerror="PAYLOAD"></video>
  </div>`,
  "/script-urls": `<div id="s">
    <a href="javascript:PAYLOAD">plain</a>
    <a href=" JaVa&#x09;ScRiPt&colon;PAYLOAD">spaced</a>
    <a href="&#x01;javascript:PAYLOAD">control</a>
    <form action="javascript:PAYLOAD"><button formaction="javascript:PAYLOAD">go</button></form>
    <svg><a xlink:href="javascript:PAYLOAD"><text>svg link</text></a></svg>
    <math><mi href="javascript:PAYLOAD">m</mi></math>
    <img src="javascript:PAYLOAD">
  </div>`,
  "/frames": `<div id="s">
    <iframe srcdoc="<script>parent.pwned = 1</script>"></iframe>
    <iframe src="javascript:PAYLOAD"></iframe>
    <object data="FOREIGN/object"></object>
    <embed src="FOREIGN/embed">
    <a href="data:text/html,<script>PAYLOAD</script>">data link</a>
    <img src="data:image/svg+xml,<svg onload='PAYLOAD'/>">
  </div>`,
  "/head-tags": `<div id="s">
    <base href="FOREIGN/">
    <meta http-equiv="refresh" content="0;url=javascript:PAYLOAD">
    <meta http-equiv="refresh" content="0;url=FOREIGN/refresh">
    <link rel="stylesheet" href="FOREIGN/style.css">
    <img src="relative.png" alt="resolved against the page, not the base">
  </div>`,
  "/svg": `<div id="s"><svg>
    <script>PAYLOAD</script>
    <script href="data:text/javascript,PAYLOAD"></script>
    <a id="animated"><animate attributeName="href" values="javascript:PAYLOAD" begin="0s"
      fill="freeze"/><set attributeName="href" to="javascript:PAYLOAD"/><text>x</text></a>
    <use href="data:image/svg+xml,<svg id='x' xmlns='http://www.w3.org/2000/svg'><image href='1' onerror='PAYLOAD'/></svg>#x"/>
    <foreignObject><iframe srcdoc="<script>parent.pwned = 1</script>"></iframe></foreignObject>
  </svg></div>`,
  "/templates": `<div id="s">
    <template><script>PAYLOAD</script><img src="/missing.png" onerror="PAYLOAD"></template>
    <div><template shadowrootmode="open"><img src="/missing.png" onerror="PAYLOAD"></template></div>
  </div>`,
  "/nesting": `<div id="s">
    <noscript><p title="</noscript><img src=/missing.png onerror=PAYLOAD>"></p></noscript>
    <svg></p><style><a id="</style><img src=/missing.png onerror=PAYLOAD>"></a></style></svg>
    <math><mtext><table><mglyph><style><!--</style><img title="--&gt;&lt;img src=/missing.png onerror=PAYLOAD&gt;"></mglyph></table></mtext></math>
    <form><math><mtext></form><form><mglyph><style></math><img src=/missing.png onerror=PAYLOAD>
  </div>`,
  "/hostile-push": `<div id="s">
    <div class="pat-push" data-pat-push="socket-url: FOREIGN_WS/push; allowed-origins: FOREIGN"></div>
  </div>`,
};

const VALID_SNIPPET = `<a href="/valid#ok-src" data-pat-inject="target: #ok"></a>`;

/** Returns a snippet that takes `#s` from `path` into `#t`. */
function inject(path: string): string {
  return `<a href="${path}#s" data-pat-inject="target: #t"></a>`;
}

/** Returns a snippet with one pat-inject element for each of `hrefs`, all aimed at `#t`. */
function fetchEach(...hrefs: string[]): string {
  return hrefs.map((href) => `<a href="${href}" data-pat-inject="target: #t"></a>`).join("");
}

/** Returns an attack of one frame for each snippet. */
function frames(...snippets: string[]): PatternAttack {
  return { frames: snippets.map((html) => ({ html })) };
}

const OTHER_ORIGIN = /is not the page's origin/;

function rejected(reason: string | RegExp = OTHER_ORIGIN, count = 1): PatternExpected {
  return { event: "patpush:url-rejected", reason, count, target: "unchanged" };
}

function invalid(reason: string): PatternExpected {
  return { event: "patpush:invalid-snippet", reason, target: "unchanged" };
}

/** The fragment is injected, and everything it contains must be inert. */
const CLEANED: PatternExpected = { event: "pat-inject-success", target: "changed" };

const CASES: ReadonlyArray<HostileCase<PatternAttack, PatternExpected>> = [
  {
    name: "protocol-relative URL",
    attack: frames(fetchEach("//FOREIGN_HOST/clean#s")),
    expected: rejected(),
  },
  {
    name: "backslash URLs",
    attack: frames(
      fetchEach("\\\\FOREIGN_HOST/clean#s", "/\\FOREIGN_HOST/clean#s", "http:/\\FOREIGN_HOST/s"),
    ),
    expected: rejected(OTHER_ORIGIN, 3),
  },
  {
    name: "scheme without slashes",
    attack: frames(fetchEach("https:FOREIGN_HOST/clean#s")),
    expected: rejected(),
  },
  {
    name: "user info before foreign host",
    attack: frames(fetchEach("http://PAGE_HOST@FOREIGN_HOST/clean#s")),
    expected: rejected("URL contains user info"),
  },
  {
    name: "user info on own host",
    attack: frames(fetchEach("http://user:secret@PAGE_HOST/clean#s")),
    expected: rejected("URL contains user info"),
  },
  {
    name: "full-width and punycode hosts",
    attack: frames(
      fetchEach("http://１２７.０.０.２:FOREIGN_PORT/clean#s", "http://xn--pple-43d.localhost/s"),
    ),
    expected: rejected(OTHER_ORIGIN, 2),
  },
  {
    name: "whitespace and controls in URL",
    attack: frames(fetchEach(" java&#x0A;script&#x09;:PAYLOAD", "&#x01;//FOREIGN_HOST/clean#s")),
    expected: { event: "patpush:url-rejected", count: 2, target: "unchanged" },
  },
  {
    name: "script, data, blob and file URLs",
    attack: frames(
      fetchEach(
        "javascript:PAYLOAD",
        "data:text/html,<div id=s><img src=x onerror=PAYLOAD></div>#s",
        "blob:FOREIGN/0b0e3c1c-5a1e-4f7e-9b1c-1f1f1f1f1f1f",
        "file:///etc/passwd",
      ),
    ),
    expected: rejected(/^scheme \w+: is not http\(s\)$/, 4),
  },
  {
    name: "relative path staying same-origin",
    attack: frames(fetchEach("./a/../b/%2e%2e/../clean#s")),
    expected: CLEANED,
  },
  {
    name: "redirect to foreign origin",
    attack: frames(inject("/to-foreign")),
    expected: {
      event: "patpush:fetch-failed",
      reason: "redirect not followed",
      target: "unchanged",
    },
  },
  {
    name: "scripts and inline handlers",
    attack: frames(inject("/handlers")),
    expected: CLEANED,
  },
  {
    name: "script URLs in links and forms",
    attack: frames(inject("/script-urls")),
    expected: CLEANED,
  },
  {
    name: "frames, plugins and data URLs",
    attack: frames(inject("/frames")),
    expected: CLEANED,
  },
  {
    name: "base, meta refresh and link",
    attack: frames(inject("/head-tags")),
    expected: CLEANED,
  },
  {
    name: "SVG script and animation",
    attack: frames(inject("/svg")),
    expected: CLEANED,
  },
  {
    name: "template and shadow root content",
    attack: frames(inject("/templates")),
    expected: CLEANED,
  },
  {
    name: "mutation XSS nesting",
    attack: frames(inject("/nesting")),
    expected: CLEANED,
  },
  {
    name: "script in the snippet itself",
    attack: frames(`<script>PAYLOAD</script><img src="/missing.png" onerror="PAYLOAD">`),
    expected: invalid("no pat-inject element"),
  },
  {
    name: "text into an idle script",
    attack: frames(`<a href="/text#s" data-pat-inject="target: script#idle"></a>`),
    expected: invalid("target is a script or style element"),
  },
  {
    name: "replacing the document element",
    attack: frames(`<a href="/clean#s" data-pat-inject="target: html::element"></a>`),
    expected: invalid("target is the document element"),
  },
  {
    name: "invalid target selector",
    attack: frames(`<a href="/clean#s" data-pat-inject="target: #t[::"></a>`),
    expected: invalid("invalid target selector"),
  },
  {
    name: "invalid source selector",
    attack: frames(`<a href="/clean" data-pat-inject="source: :has(; target: #t"></a>`),
    expected: invalid("invalid source selector"),
  },
  {
    name: "unmatched target",
    attack: frames(`<a href="/clean#s" data-pat-inject="target: #nowhere"></a>`),
    expected: { event: "pat-inject-missingTarget", target: "unchanged" },
  },
  {
    name: "unmatched source",
    attack: frames(`<a href="/clean#nothing" data-pat-inject="target: #t"></a>`),
    expected: { event: "pat-inject-missingSource", target: "unchanged" },
  },
  {
    name: "request flood in one snippet",
    attack: frames(inject("/clean").replace("#t", "#t::after").repeat(200)),
    expected: { ...invalid("too many pat-inject elements"), target: "changed" },
  },
  {
    name: "injected socket and allowed origin",
    attack: frames(inject("/hostile-push"), fetchEach("FOREIGN/clean#s")),
    expected: { ...rejected(), target: "changed" },
  },
  {
    name: "reserved event name",
    attack: { frames: [{ event: "patpush:injected" }, { event: "push", data: "x" }] },
    expected: { ...invalid("reserved event name"), count: 2 },
  },
];

describe("pattern security", () => {
  let browser: Browser;
  let site: FixtureServer;
  let foreign: FixtureServer;
  let standIn: PushStandIn;
  let replacements: Array<[string, string]>;
  let socketCount = 0;

  before(async () => {
    const bundle = await buildBundle();
    site = await startFixtureServer({ bundle });
    foreign = await startFixtureServer({ host: "127.0.0.2", cors: true });
    standIn = await startPushStandIn();

    const foreignUrl = new URL(foreign.origin);
    // Longer names first, so FOREIGN does not replace the start of FOREIGN_HOST.
    replacements = [
      ["FOREIGN_HOST", foreignUrl.host],
      ["FOREIGN_PORT", foreignUrl.port],
      ["FOREIGN_WS", `ws://${foreignUrl.host}`],
      ["FOREIGN", foreign.origin],
      ["PAGE_HOST", new URL(site.origin).host],
      ["PAYLOAD", PAYLOAD],
    ];
    for (const [path, body] of Object.entries(FRAGMENTS)) {
      site.routes.set(path, { body: expand(body) });
      foreign.routes.set(path, { body: expand(body) });
    }
    site.routes.set("/to-foreign", {
      status: 302,
      body: "",
      headers: { Location: `${foreign.origin}/clean` },
    });
    const connection = `<div id="conn" class="pat-push" data-pat-push="socket-url: ${standIn.url}">`;
    site.routes.set("/page", { body: pageHtml(`${connection}</div>${PAGE_BODY}`, EVENT_TYPES) });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await standIn?.close();
    await site?.close();
    await foreign?.close();
  });

  function expand(text: string): string {
    let expanded = text;
    for (const [token, value] of replacements) expanded = expanded.replaceAll(token, value);
    return expanded;
  }

  it("has at least 12 hostile cases", () => {
    assert.ok(CASES.length >= 12, `only ${CASES.length} cases`);
  });

  for (const { name, attack, expected } of CASES) {
    it(name, async () => {
      foreign.requests.length = 0;
      const watched = await openWatchedPage(browser);
      const { page } = watched;
      try {
        await watched.open(`${site.origin}/page`);
        socketCount += 1;
        const socket = await standIn.waitForSockets(socketCount);
        await page.waitForFunction(() =>
          document.getElementById("conn")?.classList.contains("pat-push-state-open"),
        );

        attack.frames.forEach((fields, index) => {
          const frame: Record<string, unknown> = { type: "message", id: `${index + 1}-0` };
          if (fields.html !== undefined) frame.html = expand(fields.html);
          if (fields.event !== undefined) frame.event = expand(fields.event);
          if (fields.data !== undefined) frame.data = fields.data;
          socket.send(JSON.stringify(frame));
        });
        const count = expected.count ?? 1;
        await page.waitForFunction(
          ({ type, count }) =>
            window.recordedEvents.filter((event) => event.type === type).length >= count,
          { type: expected.event, count },
          { timeout: 5000 },
        );

        // A later valid message still applies, and frames are applied in order.
        const validId = `${attack.frames.length + 1}-0`;
        socket.send(JSON.stringify({ type: "message", id: validId, html: VALID_SNIPPET }));
        await page.waitForFunction(
          () => document.getElementById("ok")?.textContent === "applied",
          undefined,
          { timeout: 5000 },
        );
        await clickLinks(page, "#t");
        // Time for a meta refresh, an animation or an image error to act.
        await pause(300);

        const events: RecordedEvent[] = await page.evaluate(() => window.recordedEvents);
        // The valid message's own success event fires on #ok.
        const matching = events.filter(
          (event) => event.type === expected.event && event.target !== "div#ok",
        );
        if (expected.event === "pat-inject-success") {
          assert.ok(matching.length >= count, `${expected.event} fired ${matching.length} times`);
        } else {
          assert.equal(matching.length, count, `${expected.event} fired ${matching.length} times`);
        }
        if (expected.reason !== undefined) {
          const reason = (matching[0]?.detail as { reason?: string } | null)?.reason ?? "";
          if (typeof expected.reason === "string") assert.equal(reason, expected.reason);
          else assert.match(reason, expected.reason);
        }

        const targetHtml = await page.evaluate(() => document.getElementById("t")?.innerHTML);
        if (expected.target === "unchanged") assert.equal(targetHtml, TARGET_HTML);
        else assert.notEqual(targetHtml, TARGET_HTML);
        assert.deepEqual(await activeContentUnder(page, "#t"), []);

        assert.deepEqual(await payloadTraces(watched), []);
        assert.deepEqual(foreign.requests, []);
        assert.deepEqual(foreignRequests(watched, [site.origin, standIn.url]), []);
        assert.deepEqual(watched.navigations, []);
        assert.deepEqual(watched.errors, []);
        assert.equal(await page.evaluate(() => document.getElementById("idle")?.textContent), "");
      } finally {
        await page.close();
      }
    });
  }
});
