import { eq } from "drizzle-orm";
import type { Db } from "../../src/store/db.js";
import { calls } from "../../src/store/schema/calls.js";
import { conversations } from "../../src/store/schema/conversations.js";
import { events } from "../../src/store/schema/events.js";
import { messages } from "../../src/store/schema/messages.js";
import { pushDeliveries } from "../../src/store/schema/push-deliveries.js";
import { pushDevices } from "../../src/store/schema/push-devices.js";
import { tokens } from "../../src/store/schema/tokens.js";

/** How many rows syncside holds for an account, table by table: what an erase must empty. */
export async function mirrorRows(db: Db, id: number) {
  return {
    events: await db.$count(events, eq(events.accountId, id)),
    conversations: await db.$count(conversations, eq(conversations.accountId, id)),
    messages: await db.$count(messages, eq(messages.accountId, id)),
    calls: await db.$count(calls, eq(calls.accountId, id)),
    tokens: await db.$count(tokens, eq(tokens.accountId, id)),
    pushDevices: await db.$count(pushDevices, eq(pushDevices.accountId, id)),
    pushDeliveries: await db.$count(pushDeliveries, eq(pushDeliveries.accountId, id)),
  };
}

/** mirrorRows of an erased account. */
export const EMPTY_MIRROR = {
  events: 0,
  conversations: 0,
  messages: 0,
  calls: 0,
  tokens: 0,
  pushDevices: 0,
  pushDeliveries: 0,
};
