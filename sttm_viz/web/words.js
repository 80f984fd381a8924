/* The page's words (sttm_viz/guide.py WORDS, sent in the page protocol): `say` fills a word's
{name}s. Before a protocol arrives (a test page with the scripts only) a key says itself. */
const WORDS = {};

/** The protocol's words (app.js, once per page). */
export function useWords(words) { Object.assign(WORDS, words); }

/** One of the page's words with {name}s filled in; the key itself where there is none. */
export function say(key, vars = {}) {
  const text = WORDS[key] || key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

