import { createRoute, z } from "@hono/zod-openapi";
import { AppError } from "../../errors.js";
import {
  findMessage,
  type MessagePlace,
  messagesBefore,
  messagesChangedAfter,
  messageViewOf,
} from "../../store/sync.js";
import { accountRoute } from "../auth.js";
import type { App } from "../context.js";
import { errorResponses } from "../schemas.js";
import { MessageSchema, toMessage } from "./conversation-views.js";
import {
  cursorQuery,
  decodeCursor,
  encodeCursor,
  FIRST_TIME,
  LAST_TIME,
  limitQuery,
  ownConversation,
  PeerParams,
  seqQuery,
} from "./params.js";

/**
 * ["changed", last seq] continues a delta; ["history", sent_at (epoch ms), created_seq] of the
 * last message shown goes further back; ["history"] starts at the newest.
 */
const MessagesCursor = z.union([
  z.tuple([z.literal("changed"), z.number().int().min(0)]),
  z.tuple([
    z.literal("history"),
    z.number().int().min(FIRST_TIME).max(LAST_TIME),
    z.number().int().min(0),
  ]),
  z.tuple([z.literal("history")]),
]);

const route = createRoute({
  ...accountRoute,
  method: "get",
  path: "/v1/conversations/{peer}/messages",
  tags: ["conversations"],
  summary: "One conversation's messages: its compacted delta, or its history backwards",
  description:
    "With `changed_since`: every message created or changed after that version, once, in its current state, by version ascending. With `before`: the messages sent before that one, newest first. With neither: the newest messages, newest first. `cursor` continues whichever listing returned it.",
  request: {
    params: PeerParams,
    query: z.object({
      changed_since: seqQuery(
        "changed_since",
        "a conversation or message `version`: list what changed after it",
      ),
      before: z
        .string()
        .min(1)
        .max(1024)
        .optional()
        .openapi({
          param: { name: "before", in: "query" },
          description: "a message `id`: list the history before it",
        }),
      cursor: cursorQuery,
      limit: limitQuery(50, 200, "messages"),
    }),
  },
  responses: {
    200: {
      description: "one page of messages",
      content: {
        "application/json": {
          schema: z
            .object({
              messages: z.array(MessageSchema),
              next_cursor: z
                .string()
                .nullable()
                .openapi({ description: "pass as `cursor` for the next page; null at the end" }),
            })
            .openapi("MessagePage"),
        },
      },
    },
    ...errorResponses("validation_failed", "unauthorized", "not_found"),
  },
});

export function registerConversationsMessages(app: App): void {
  app.openapi(route, async (c) => {
    const { db } = c.var.deps.store;
    const { accountId } = c.var.principal;
    const query = c.req.valid("query");
    const conversation = await ownConversation(db, accountId, c.req.valid("param").peer);

    let listing: z.infer<typeof MessagesCursor>;
    if (query.cursor) {
      listing = decodeCursor(query.cursor, MessagesCursor);
    } else if (query.changed_since !== undefined && query.before !== undefined) {
      throw new AppError("validation_failed", "changed_since and before cannot be combined");
    } else if (query.changed_since !== undefined) {
      listing = ["changed", query.changed_since];
    } else if (query.before !== undefined) {
      const anchor = await findMessage(db, conversation, query.before);
      if (!anchor) throw new AppError("not_found", `before: no message ${query.before}`);
      listing = ["history", anchor.sentAt.getTime(), anchor.createdSeq];
    } else {
      listing = ["history"];
    }

    const rows =
      listing[0] === "changed"
        ? await messagesChangedAfter(db, conversation, listing[1], query.limit + 1)
        : await messagesBefore(db, conversation, placeOf(listing), query.limit + 1);
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    const next =
      rows.length > query.limit && last
        ? encodeCursor(
            listing[0] === "changed"
              ? ["changed", last.seq]
              : ["history", last.sentAt.getTime(), last.createdSeq],
          )
        : null;
    return c.json(
      { messages: page.map((row) => toMessage(messageViewOf(row))), next_cursor: next },
      200,
    );
  });
}

/** The place a history listing continues before; none from the newest. */
function placeOf(listing: ["history", number, number] | ["history"]): MessagePlace | null {
  const [, sentAt, createdSeq] = listing;
  return sentAt === undefined || createdSeq === undefined
    ? null
    : { sentAt: new Date(sentAt), createdSeq };
}
