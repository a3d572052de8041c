import { readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { expect } from "vitest";
import { parse } from "yaml";

interface Operation {
  parameters?: { in: string; name: string }[];
  requestBody?: unknown;
  security?: Record<string, string[]>[];
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}
type Spec = {
  paths: Record<string, Record<string, Operation>>;
  components?: Record<string, unknown>;
};

const spec = parse(
  readFileSync(
    join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../../openapi.yaml"),
    "utf8",
  ),
) as Spec;

const ajv = new Ajv2020.default({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.addSchema({ $id: "spec", components: spec.components ?? {} } as object);

const templates = Object.keys(spec.paths).map((template) => ({
  template,
  pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}$`),
}));

/** The spec's path template for a concrete request path, if the spec has one. */
export function specPathFor(path: string): string | undefined {
  return templates.find((t) => t.pattern.test(path))?.template;
}

function rewriteRefs(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(rewriteRefs);
  if (schema && typeof schema === "object") {
    return Object.fromEntries(
      Object.entries(schema).map(([k, v]) => [
        k,
        k === "$ref" && typeof v === "string" && v.startsWith("#/") ? `spec${v}` : rewriteRefs(v),
      ]),
    );
  }
  return schema;
}

const validators = new Map<string, ReturnType<typeof ajv.compile>>();

/**
 * Asserts the response is one the contract allows for this route: the status is declared, the
 * content type matches, and the body validates against the declared schema. Returns the body.
 */
export async function expectContract<T = unknown>(
  res: Response,
  method: string,
  path: string,
): Promise<T> {
  const pathname = new URL(path, "http://x").pathname;
  const template = specPathFor(pathname);
  expect(template, `${method} ${pathname} is not in openapi.yaml`).toBeDefined();
  const operation = spec.paths[template as string]?.[method.toLowerCase()];
  expect(operation, `${method} ${template} is not in openapi.yaml`).toBeDefined();
  const declared = (operation as Operation).responses[String(res.status)];
  expect(declared, `${method} ${template} does not declare status ${res.status}`).toBeDefined();
  const text = await res.clone().text();
  const contentTypes = Object.keys(declared?.content ?? {});
  if (contentTypes.length === 0) {
    expect(text).toBe("");
    return undefined as T;
  }
  const type = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
  expect(contentTypes, `content type of ${method} ${template} ${res.status}`).toContain(type);
  const body = type.endsWith("json") ? JSON.parse(text) : text;
  const schema = declared?.content?.[type]?.schema;
  if (schema) {
    const key = `${method} ${template} ${res.status} ${type}`;
    let validate = validators.get(key);
    if (!validate) {
      validate = ajv.compile(rewriteRefs(schema) as object);
      validators.set(key, validate);
    }
    const ok = validate(body);
    expect(ok, `${key}: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 2000)}`).toBe(true);
  }
  return body as T;
}

/**
 * Every operation of the spec with the parameters it declares, whether it takes a body, and
 * whether it requires a bearer token.
 */
export function specOperations(): {
  method: string;
  path: string;
  parameters: { in: string; name: string }[];
  hasBody: boolean;
  bearer: boolean;
}[] {
  return Object.entries(spec.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({
      method: method.toUpperCase(),
      path,
      parameters: (op.parameters ?? []).map((p) => ({ in: p.in, name: p.name })),
      hasBody: op.requestBody !== undefined,
      bearer: (op.security ?? []).some((s) => "bearer" in s),
    })),
  );
}

export function specRoutes(): string[] {
  return Object.entries(spec.paths).flatMap(([path, ops]) =>
    Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
  );
}
