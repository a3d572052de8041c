import { z } from "@hono/zod-openapi";
import { AppError } from "../../errors.js";
import { findAccountId } from "../../store/admin.js";
import type { Db } from "../../store/db.js";
import { ACCOUNT_JID, normalizePeer, PeerParams } from "./params.js";

/** `{jid}` in the admin routes: any account of this server, named by an admin. */
export const AccountParams = z.object({
  jid: PeerParams.shape.peer
    .regex(ACCOUNT_JID, "expected an account's JID like alice@example.org")
    .openapi({
      param: { name: "jid", in: "path" },
      description: "the account's bare JID, URL-encoded",
      example: "alice@example.org",
    }),
});

/** The account's id; 404 when syncside has never seen this JID. */
export async function knownAccount(db: Db, jid: string): Promise<number> {
  const id = await findAccountId(db, normalizePeer(jid));
  if (id === null) throw new AppError("not_found", `no account ${jid}`);
  return id;
}
