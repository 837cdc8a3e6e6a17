// OpenClaw's machine-readable protocol contract (@openclaw/gateway-protocol's protocol.schema.json)
// compiled with Ajv, with a tally of what was validated and a list of every violation.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';

// Not in the package's "exports", so by path.
export const schemaPath = fileURLToPath(
  new URL('../node_modules/@openclaw/gateway-protocol/protocol.schema.json', import.meta.url),
);

// `discriminator` is an OpenAPI annotation here (the `oneOf` it decorates still decides), and one
// of its two uses is a bare string, which Ajv's discriminator support rejects: drop it, except
// where it is the name of a property.
function stripDiscriminators(node, parentKey) {
  if (Array.isArray(node)) return node.map((n) => stripDiscriminators(n, null));
  if (!node || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    const isPropertyMap = parentKey === 'properties' || parentKey === 'patternProperties' || parentKey === 'definitions';
    if (k === 'discriminator' && !isPropertyMap) continue;
    out[k] = stripDiscriminators(v, k);
  }
  return out;
}

export function loadProtocolSchema() {
  const raw = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  const schema = stripDiscriminators(raw, null);
  const ajv = new Ajv({ strict: false, allErrors: true });
  ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
  ajv.addSchema(schema);
  const id = schema.$id;
  const frame = ajv.getSchema(id);
  const defs = new Map();
  // name: a definition ("HelloOk") or a path below definitions ("Snapshot/properties/health").
  const def = (name) => {
    const node = name.split('/').reduce((n, k) => (n && typeof n === 'object' ? n[k] : undefined), schema.definitions);
    if (!node) throw new Error(`protocol.schema.json has no #/definitions/${name}`);
    if (!defs.has(name)) defs.set(name, ajv.compile({ $ref: `${id}#/definitions/${name}` }));
    return defs.get(name);
  };
  return { ajv, schema, id, frame, def };
}

const FRAME_BRANCHES = { req: 'RequestFrame', res: 'ResponseFrame', event: 'EventFrame' };

// Validates values and keeps counts and violations, so a test can report all of them at once.
export class Checker {
  constructor() {
    this.proto = loadProtocolSchema();
    this.counts = new Map();
    this.violations = [];
  }

  // kind: 'frame' (top-level schema) or a definition name.
  check(kind, value, context) {
    const validate = kind === 'frame' ? this.proto.frame : this.proto.def(kind);
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    if (validate(value)) return true;
    let schemaPath = kind === 'frame' ? 'protocol.schema.json#' : `protocol.schema.json#/definitions/${kind}`;
    let errors = validate.errors;
    // The top-level oneOf reports every branch; the frame's own `type` says which one it meant.
    const branch = kind === 'frame' ? FRAME_BRANCHES[value?.type] : undefined;
    if (branch) {
      const own = this.proto.def(branch);
      if (!own(value)) {
        errors = own.errors;
        schemaPath = `protocol.schema.json#/oneOf -> #/definitions/${branch}`;
      }
    }
    this.violations.push({ kind, schemaPath, context, value, errors });
    return false;
  }

  count(kind) {
    return this.counts.get(kind) ?? 0;
  }

  // Every violation recorded since `mark`, formatted for an assertion message.
  report(mark = 0) {
    return this.violations
      .slice(mark)
      .map(
        (v, i) =>
          `#${mark + i + 1} ${v.context}: does not validate against ${v.schemaPath}\n` +
          `  value: ${JSON.stringify(v.value)}\n` +
          v.errors
            .map((e) => `  - ${e.instancePath || '(root)'} ${e.message} [${e.schemaPath}]${e.params ? ' ' + JSON.stringify(e.params) : ''}`)
            .join('\n'),
      )
      .join('\n');
  }
}
