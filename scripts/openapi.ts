import { writeFile } from "node:fs/promises";
import { openapiYamlPath } from "../src/api/openapi.js";
import { renderOpenApiYaml } from "../src/api/openapi-document.js";

/** Writes openapi.yaml from the routes' own schemas; a unit test fails when it is stale. */
await writeFile(openapiYamlPath(), renderOpenApiYaml());
process.stdout.write(`wrote ${openapiYamlPath()}\n`);
