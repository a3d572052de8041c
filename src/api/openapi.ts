import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import type { App } from "./context.js";

export function openapiYamlPath(): string {
  return join(packageRoot(), "openapi.yaml");
}

/** The contract as the code declares it; `npm run openapi` writes it to openapi.yaml. */
export function buildOpenApiDocument(app: App) {
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "A token from POST /v1/tokens",
  });
  return app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "syncside",
      version: "1",
      description:
        "One-round-trip catch-up for XMPP phones: what changed since the last sync, and who is calling.",
    },
    servers: [{ url: "/" }],
  });
}
