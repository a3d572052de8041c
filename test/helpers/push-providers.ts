import { execFile } from "node:child_process";
import type { KeyObject } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingMessage } from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { decodeProtectedHeader, jwtVerify } from "jose";

const run = promisify(execFile);

export interface ProviderAnswer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface ApnsHit {
  token: string;
  headers: http2.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/**
 * A stand-in for Apple's APNs: HTTP/2 over TLS with a certificate made for the test. It checks
 * what Apple checks (path, push type, topic, the provider JWT's ES256 signature, kid and issuer)
 * and answers like Apple, or with whatever `answer` says for a request.
 */
export async function startApns(options: { publicKey: KeyObject; keyId: string; teamId: string }) {
  const dir = await mkdtemp(join(tmpdir(), "apns-"));
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    join(dir, "key.pem"),
    "-out",
    join(dir, "cert.pem"),
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  ]);
  const cert = await readFile(join(dir, "cert.pem"), "utf8");
  const key = await readFile(join(dir, "key.pem"), "utf8");
  await rm(dir, { recursive: true, force: true });

  const hits: ApnsHit[] = [];
  const requests: ApnsHit[] = [];
  const refused: string[] = [];
  const state: {
    answer: (hit: ApnsHit) => ProviderAnswer | undefined;
    /** how many of the next connections never answer, as one whose flow a NAT dropped */
    silentSessions: number;
  } = {
    answer: () => undefined,
    silentSessions: 0,
  };
  const stats = { sessions: 0 };
  const silent = new WeakSet<http2.Http2Session>();
  const server = http2.createSecureServer({ cert, key });
  server.on("session", (session) => {
    stats.sessions++;
    if (state.silentSessions > 0) {
      state.silentSessions--;
      silent.add(session);
    }
  });
  server.on("stream", (stream, headers) => {
    if (stream.session && silent.has(stream.session)) {
      // Never answered; the client gives up on the connection at last (GOAWAY with an error).
      stream.on("error", () => {});
      return;
    }
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", async () => {
      const reply = (a: ProviderAnswer) => {
        stream.respond({ ":status": a.status, "apns-id": "1", ...(a.headers ?? {}) });
        stream.end(a.body === undefined ? "" : JSON.stringify(a.body));
      };
      const refuse = (status: number, reason: string) => {
        refused.push(reason);
        reply({ status, body: { reason } });
      };
      const path = String(headers[":path"]);
      const match = /^\/3\/device\/([0-9a-f]{64})$/.exec(path);
      if (headers[":method"] !== "POST") return refuse(405, "MethodNotAllowed");
      if (!match?.[1]) return refuse(404, "BadPath");
      const jwt = /^bearer (.+)$/.exec(String(headers.authorization ?? ""))?.[1] ?? "";
      try {
        if (decodeProtectedHeader(jwt).kid !== options.keyId) throw new Error("kid");
        await jwtVerify(jwt, options.publicKey, {
          algorithms: ["ES256"],
          issuer: options.teamId,
          requiredClaims: ["iat"],
        });
      } catch {
        return refuse(403, "InvalidProviderToken");
      }
      const type = headers["apns-push-type"];
      const topic = String(headers["apns-topic"] ?? "");
      if (type !== "alert" && type !== "voip") return refuse(400, "InvalidPushType");
      if (!topic || (type === "voip") !== topic.endsWith(".voip")) {
        return refuse(400, "DeviceTokenNotForTopic");
      }
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return refuse(400, "BadPayload");
      }
      if (Buffer.concat(chunks).length > (type === "voip" ? 5120 : 4096)) {
        return refuse(413, "PayloadTooLarge");
      }
      const hit: ApnsHit = { token: match[1], headers, body };
      requests.push(hit);
      const answer = state.answer(hit);
      if (!answer || answer.status === 200) hits.push(hit);
      reply(answer ?? { status: 200 });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    ca: cert,
    /** accepted pushes, in arrival order */
    hits,
    /** every well-formed request, whatever it was answered */
    requests,
    /** reasons of requests refused by the checks above (must stay empty) */
    refused,
    state,
    /** connections opened to it */
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open client sessions would keep close() waiting.
        setTimeout(resolve, 500).unref();
      }),
  };
}

export interface FcmHit {
  message: {
    token: string;
    data: Record<string, string>;
    android: { priority: string; ttl?: string; collapse_key?: string };
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** A stand-in for Google's OAuth token endpoint and FCM HTTP v1, on one plain HTTP server. */
export async function startFcm(options: {
  publicKey: KeyObject;
  clientEmail: string;
  project: string;
}) {
  const hits: FcmHit[] = [];
  const refused: string[] = [];
  const issued = new Set<string>();
  const stats = { tokenRequests: 0 };
  const state: { answer: (hit: FcmHit) => ProviderAnswer | undefined } = {
    answer: () => undefined,
  };
  let url = "";
  const server = createServer(async (req, res) => {
    const reply = (a: ProviderAnswer) => {
      // A string body stands for a page of something else on the way: a proxy, a wrong URL.
      const page = typeof a.body === "string";
      res.writeHead(a.status, {
        "content-type": page ? "text/html" : "application/json",
        ...(a.headers ?? {}),
      });
      res.end(page ? a.body : JSON.stringify(a.body ?? {}));
    };
    const body = await readBody(req);
    if (req.method === "POST" && req.url === "/token") {
      stats.tokenRequests++;
      const form = new URLSearchParams(body);
      try {
        if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") {
          throw new Error("grant_type");
        }
        const { payload } = await jwtVerify(form.get("assertion") ?? "", options.publicKey, {
          algorithms: ["RS256"],
          issuer: options.clientEmail,
          audience: `${url}/token`,
        });
        if (payload.scope !== "https://www.googleapis.com/auth/firebase.messaging") {
          throw new Error("scope");
        }
      } catch (err) {
        refused.push(`token: ${String(err)}`);
        return reply({ status: 400, body: { error: "invalid_grant" } });
      }
      const token = `ya29.test-${stats.tokenRequests}`;
      issued.add(token);
      return reply({ status: 200, body: { access_token: token, expires_in: 3600 } });
    }
    if (req.method === "POST" && req.url === `/v1/projects/${options.project}/messages:send`) {
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
      if (!issued.has(bearer)) {
        refused.push("send: unknown access token");
        return reply({ status: 401, body: { error: { status: "UNAUTHENTICATED" } } });
      }
      const hit = JSON.parse(body) as FcmHit;
      const answer = state.answer(hit);
      if (!answer || answer.status === 200) hits.push(hit);
      return reply(answer ?? { status: 200, body: { name: "projects/p/messages/1" } });
    }
    refused.push(`${req.method} ${req.url}`);
    reply({ status: 404 });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    refused,
    stats,
    state,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
