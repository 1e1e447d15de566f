// A small Markdown renderer for model replies. Safety comes from the order of work: every piece
// of the reply's text is HTML-escaped before any tag is added, and the only tags added are the
// fixed ones below (links only for http, https and mailto URLs). Unclosed code fences render as
// code to the end, so a reply being streamed looks right at every step.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** HTML-escapes `text`; NUL (the placeholder mark below) becomes U+FFFD. */
export function escapeHtml(text) {
  return text.replace(/\0/g, "\uFFFD").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const SAFE_URL = /^(https?:\/\/|mailto:)/i;

/** The HTML for `text` (Markdown): paragraphs, headings, lists, quotes, rules, fenced code. */
export function renderMarkdown(text) {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const [marker, lang] = [fence[1], fence[2]];
      const body = [];
      i += 1;
      while (i < lines.length && !isClosingFence(lines[i], marker)) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or past the end when the reply has not closed it yet)
      out.push(codeBlock(body.join("\n"), lang));
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const level = heading[1].length;
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      out.push("<hr>");
      i += 1;
      continue;
    }
    if (BULLET.test(line) || NUMBERED.test(line)) {
      const numbered = !BULLET.test(line);
      const pattern = numbered ? NUMBERED : BULLET;
      const items = [];
      const first = numbered ? Number(NUMBERED.exec(line)[1]) : 1;
      while (i < lines.length && pattern.test(lines[i])) {
        const match = pattern.exec(lines[i]);
        items.push(`<li>${inline(numbered ? match[2] : match[1])}</li>`);
        i += 1;
      }
      const tag = numbered ? "ol" : "ul";
      const start = numbered && first !== 1 ? ` start="${first}"` : "";
      out.push(`<${tag}${start}>${items.join("")}</${tag}>`);
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        quoted.push(QUOTE.exec(lines[i])[1]);
        i += 1;
      }
      out.push(`<blockquote>${renderMarkdown(quoted.join("\n"))}</blockquote>`);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) {
      paragraph.push(lines[i]);
      i += 1;
    }
    out.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
  }
  return out.join("\n");
}

function isClosingFence(line, marker) {
  const trimmed = line.trim();
  return trimmed.length >= marker.length && trimmed === marker[0].repeat(trimmed.length);
}

function startsBlock(line) {
  return [FENCE, HEADING, RULE, BULLET, NUMBERED, QUOTE].some((p) => p.test(line));
}

function codeBlock(code, lang) {
  const label = lang ? ` data-lang="${escapeHtml(lang)}"` : "";
  const cls = lang ? ` class="language-${escapeHtml(lang)}"` : "";
  return (
    `<div class="code"${label}><button type="button" class="copy-code" title="Copy code">` +
    `Copy</button><pre><code${cls}>${escapeHtml(code)}</code></pre></div>`
  );
}

/** Inline Markdown on one line: code spans, links, bold, italics, strikethrough. */
export function inline(text) {
  // Code spans and links first, out of the way of emphasis (NUL-delimited placeholders:
  // escaping removed every NUL from the text).
  const held = [];
  const hold = (html) => {
    held.push(html);
    return `\0${held.length - 1}\0`;
  };
  let html = escapeHtml(text).replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, __, code) =>
    hold(`<code>${code.replace(/^ (.*) $/, "$1")}</code>`),
  );
  html = html.replace(/\[([^\]\0]+)\]\(([^)\s\0]+)\)/g, (whole, label, url) => {
    // The URL is already escaped; &amp; in it reads back as & in the attribute, as it should.
    if (!SAFE_URL.test(url)) return whole;
    return hold(`<a href="${url}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`);
  });
  return emphasis(html).replace(/\0(\d+)\0/g, (_, n) => held[Number(n)]);
}

function emphasis(html) {
  return html
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
}
