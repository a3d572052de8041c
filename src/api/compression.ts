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
export const compressReads: MiddlewareHandler = (c, next) =>
  c.req.method === "GET" ? gzip(c, next) : next();
