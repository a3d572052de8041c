import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { dropDatabase } from "./database.js";
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
  // Another test run on this machine may be using the instance: reuse it, and leave stopping it
  // to the run that started it. (After changing the ejabberd module, stop it to rebuild.)
  const running = await ejabberdScript(root, instance, "status").then(
    () => true,
    () => false,
  );
  if (!running) {
    // Each run starts from an empty server: accounts and archives of earlier runs are gone.
    await rm(join(instance.home, "spool"), { recursive: true, force: true });
    await dropDatabase(new URL(instance.sql).pathname.slice(1));
    await ejabberdScript(root, instance, "start");
  }
  project.provide("ejabberd", instance);
  return async () => {
    if (!running) await ejabberdScript(root, instance, "stop");
  };
}
