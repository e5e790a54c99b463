// Links node_modules/.bin/tollgate to this package's CLI, so that `npx tollgate`
// in a clone runs the checkout directly. Without the link npx installs the
// package into its own cache and runs that copy, seconds slower on every call.
import { existsSync, lstatSync, mkdirSync, symlinkSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const binDir = join(root, "node_modules", ".bin");
const link = join(binDir, "tollgate");

mkdirSync(binDir, { recursive: true });
if (existsSync(link) || lstatSync(link, { throwIfNoEntry: false })) unlinkSync(link);
symlinkSync(join("..", "..", "bin", "tollgate.js"), link);
