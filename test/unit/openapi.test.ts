import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.js";
import { openapiYamlPath } from "../../src/api/openapi.js";
import { renderOpenApiYaml } from "../../src/api/openapi-document.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import type { Store } from "../../src/store/db.js";
import { specRoutes } from "../helpers/contract.js";

describe("openapi.yaml", () => {
  it("is what the route definitions generate (run `npm run openapi` after changing a route)", () => {
    expect(readFileSync(openapiYamlPath(), "utf8")).toBe(renderOpenApiYaml());
  });

  it("lists exactly the routes the app serves", () => {
    const app = createApp({
      store: {} as Store,
      config: loadConfig({}),
      logger: createLogger("silent"),
      readiness: { check: async () => ({}) },
    });
    const served = new Set(
      app.routes
        .filter((r) => r.method !== "ALL")
        // Swagger UI's own files are assets of /docs, not API routes.
        .filter((r) => !r.path.startsWith("/docs/assets"))
        .map((r) => `${r.method} ${r.path.replace(/:([A-Za-z_]+)(\{[^}]*\})?/g, "{$1}")}`),
    );
    expect([...served].sort()).toEqual([...new Set(specRoutes())].sort());
  });
});
