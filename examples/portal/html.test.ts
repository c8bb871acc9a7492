import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { escapeHtml, html } from "./html.ts";

describe("html template", () => {
  it("escapes interpolated text", () => {
    const name = `<img src=x onerror="alert('x')">&`;
    assert.equal(
      html`<p title="${name}">${name}</p>`.value,
      '<p title="&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;">&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;</p>',
    );
  });

  it("inserts nested templates as markup", () => {
    const items = ["a<b", "c"].map((item) => html`<li>${item}</li>`);
    assert.equal(html`<ul>${items}</ul>`.value, "<ul><li>a&lt;b</li><li>c</li></ul>");
  });

  it("renders empty values as nothing", () => {
    assert.equal(html`[${undefined}${null}${false}${0}]`.value, "[0]");
  });
});

describe("escape html", () => {
  it("escapes the five special characters", () => {
    assert.equal(escapeHtml(`&<>"'`), "&amp;&lt;&gt;&quot;&#39;");
  });
});
