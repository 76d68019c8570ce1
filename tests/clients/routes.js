// Drives the npm `openwhisk` client's `routes` API (what the Serverless plugin uses) in two phases.
// PHASE=create: web actions of each response type, a plain action, a secured one, and their routes; then list/get.
// PHASE=delete: delete one verb, a whole API by name, one by base path, and one that does not exist.
// Usage: APIHOST=http://127.0.0.1:PORT AUTH=uuid:key SUFFIX=abc PHASE=create node routes.js
'use strict'

const { ow, out, step } = require('./steps')

const sfx = process.env.SUFFIX || 'x'
const shop = `/shop${sfx}`
const pages = `/pages${sfx}`
const name = a => `gw-${a}-${sfx}`
const web = { 'web-export': true }
const actions = {
  json: 'function main(p) { return { hello: p.name || "stranger", path: p.__ow_path, method: p.__ow_method } }',
  http: 'function main(p) { return { statusCode: p.__ow_method === "post" ? 201 : 200, headers: { "X-Path": p.__ow_path }, ' +
    'body: { path: p.__ow_path, method: p.__ow_method, a: p.a, q: p.q } } }',
  text: 'function main(p) { return { body: "plain words for " + (p.name || "you") } }',
  html: 'function main(p) { return { body: "<h1>hi " + (p.name || "") + "</h1>" } }',
  plain: 'function main(p) { return { plain: true } }',
  secure: 'function main(p) { return { secure: true } }'
}

async function create () {
  for (const [kind, code] of Object.entries(actions)) {
    const annotations = kind === 'plain' ? {} : kind === 'secure' ? { ...web, 'require-whisk-auth': 's3cr3t' } : web
    await step(`action.${kind}`, () => ow.actions.create({ name: name(kind), action: code, kind: 'nodejs:default', annotations }))
  }
  await step('route.json', () => ow.routes.create({ basepath: shop, relpath: '/items', operation: 'GET', action: name('json') }))
  await step('route.http.param', () => ow.routes.create({ basepath: shop, relpath: '/items/{id}', operation: 'GET', action: name('http'), responsetype: 'http' }))
  await step('route.http.post', () => ow.routes.create({ basepath: shop, relpath: '/items', operation: 'POST', action: name('http'), responsetype: 'http' }))
  await step('route.text', () => ow.routes.create({ name: 'Pages API', basepath: pages, relpath: '/text', operation: 'GET', action: name('text'), responsetype: 'text' }))
  await step('route.html', () => ow.routes.create({ basepath: pages, relpath: '/html', operation: 'GET', action: name('html'), responsetype: 'html' }))
  await step('route.plain', () => ow.routes.create({ basepath: `/plain${sfx}`, relpath: '/x', operation: 'GET', action: name('plain') }))
  await step('route.secure', () => ow.routes.create({ basepath: `/secure${sfx}`, relpath: '/s', operation: 'GET', action: name('secure'), secure_key: 's3cr3t' }))
  await step('route.param.json', () => ow.routes.create({ basepath: shop, relpath: '/bad/{id}', operation: 'GET', action: name('json') }))
  await step('list', () => ow.routes.list())
  await step('list.shop', () => ow.routes.list({ basepath: shop }))
  await step('get.byname', () => ow.routes.get({ name: 'Pages API' }))
  await step('get.missing', () => ow.routes.get({ basepath: `/nothing${sfx}` }))
}

async function remove () {
  await step('delete.verb', () => ow.routes.delete({ basepath: shop, relpath: '/items', operation: 'POST' }))
  await step('list.shop', () => ow.routes.list({ basepath: shop }))
  await step('delete.byname', () => ow.routes.delete({ name: 'Pages API' }))
  await step('delete.shop', () => ow.routes.delete({ basepath: shop }))
  await step('delete.missing', () => ow.routes.delete({ basepath: `/nothing${sfx}` }))
  await step('list', () => ow.routes.list())
}

(process.env.PHASE === 'delete' ? remove() : create()).then(() => console.log(JSON.stringify(out)))
