// /whisk.system/utils/hosturl: the URL that invokes an action (`path`: "name" or "package/name"), a trigger
// (`trigger: true`) or a web action (`web: true`, optional `ext`), from the API host the action was given.
const WEB_EXTENSIONS = ['.html', '.http', '.json', '.svg', '.text'];

function main(args) {
  const host = process.env.__OW_API_HOST;
  const ns = process.env.__OW_NAMESPACE;
  const web = args.web === true;
  if (web && args.trigger) {
    return { error: 'triggers are not allowed for web actions.' };
  }
  if (web && args.ext && !WEB_EXTENSIONS.includes(args.ext)) {
    return { error: 'extension for web action must be one of [".html", ".http", ".json", ".svg", ".text"].' };
  }
  // As in OpenWhisk's catalog, a trigger without a path fails here (developer error).
  if (!web && args.trigger && args.path.includes('/')) {
    return { error: 'triggers are not allowed in packages.' };
  }
  const base = web
    ? `${host}/api/v1/web/${ns}`
    : `${host}/api/v1/namespaces/${ns}/${args.trigger === true ? 'triggers' : 'actions'}`;
  if (!args.path) {
    return { url: base };
  }
  const path = web && !args.path.includes('/') ? `default/${args.path}` : args.path;
  const ext = web ? args.ext || '' : '';
  return { url: `${base}/${path}${ext}` };
}
