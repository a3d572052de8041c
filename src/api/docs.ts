import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { App } from "./context.js";
import { openapiYamlPath } from "./openapi.js";

const require = createRequire(import.meta.url);

/** Renders openapi.yaml with Swagger UI served from the installed package: no CDN needed. */
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>syncside API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>`;

const INIT = `window.ui = SwaggerUIBundle({ url: "/openapi.yaml", dom_id: "#ui", deepLinking: true });`;

/** A Map, not an object: a path like "constructor" must not find Object.prototype's members. */
const ASSETS = new Map([
  ["swagger-ui.css", "text/css; charset=utf-8"],
  ["swagger-ui-bundle.js", "text/javascript; charset=utf-8"],
]);

export function registerDocs(app: App): void {
  for (const [path, type, summary] of [
    ["/openapi.yaml", "application/yaml", "This API contract"],
    ["/docs", "text/html", "The API contract, rendered for reading"],
  ] as const) {
    app.openAPIRegistry.registerPath({
      method: "get",
      path,
      tags: ["operations"],
      summary,
      responses: {
        200: { description: summary, content: { [type]: { schema: { type: "string" } } } },
      },
    });
  }
  const assetDir = dirname(require.resolve("swagger-ui-dist/package.json"));
  app.get("/openapi.yaml", async (c) => {
    const yaml = await readFile(openapiYamlPath(), "utf8");
    return c.body(yaml, 200, { "content-type": "application/yaml; charset=utf-8" });
  });
  app.get("/docs", (c) => c.html(PAGE));
  app.get("/docs/assets/init.js", (c) =>
    c.body(INIT, 200, { "content-type": "text/javascript; charset=utf-8" }),
  );
  app.get("/docs/assets/:file", async (c) => {
    const file = c.req.param("file");
    const type = ASSETS.get(file);
    if (!type) return c.notFound();
    const content = await readFile(join(assetDir, file));
    return c.body(content, 200, {
      "content-type": type,
      "cache-control": "public, max-age=86400",
    });
  });
}
