import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { type EjabberdInstance, ejabberdScript, testInstance } from "./ejabberd.js";

declare module "vitest" {
  export interface ProvidedContext {
    ejabberd: EjabberdInstance;
  }
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** One real ejabberd for the whole integration run, on its own ports, home and domain. */
export default async function setup(project: TestProject) {
  const instance = testInstance(root);
  // Installs Debian's ejabberd on a fresh machine; a no-op where it is present.
  await ejabberdScript(root, instance, "install");
  // A previous run killed midway may have left its instance running; start from a clean one.
  await ejabberdScript(root, instance, "stop").catch(() => {});
  await ejabberdScript(root, instance, "start");
  project.provide("ejabberd", instance);
  return async () => {
    await ejabberdScript(root, instance, "stop");
  };
}
