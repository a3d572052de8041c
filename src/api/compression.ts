import type { MiddlewareHandler } from "hono";
import { compress } from "hono/compress";

const gzip = compress();

/**
 * Compresses GET answers (gzip or deflate, whichever the client accepts; from 1 KB on). A phone
 * on a mobile link pays for a sync's bytes in slow-start round trips: 1,000 messages are about
 * 240 KB as JSON and a fraction of that compressed. Only GET answers are compressed: they hold
 * no secret (a token's secret is only ever in a POST answer), so compressing them next to
 * content an attacker chose reveals nothing (BREACH).
 */
export const compressReads: MiddlewareHandler = (c, next) => {
  if (c.req.method !== "GET") return next();
  // Set before the answer exists, Vary is built into it. Hono's middleware adds it afterwards
  // otherwise, and a header added to a finished answer makes Hono rebuild it around a web
  // stream (the Node adapter's buffered answer is no longer used): that doubled what a sync
  // that is not compressed allocated, web streams and all.
  c.header("vary", "Accept-Encoding");
  return gzip(c, next);
};
