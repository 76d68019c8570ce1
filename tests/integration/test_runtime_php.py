"""The PHP kind (php:8.4, Debian trixie's PHP 8.4), as OpenWhisk's PHP runtime behaves (apache/openwhisk-runtime-php
core/php8.xAction, docs/actions-php.md): `main(array $args): array`, cold then warm, logs, `--main`, zips with index.php
(and a vendor/ of their own, else the runtime's Guzzle and ramsey/uuid), and the error paths with its statuses and
texts (an exception is a 502 "The action did not return a dictionary or array.", the exception in the logs)."""

from __future__ import annotations

import pytest

from tests.integration import kinds
from tests.integration.kinds import NO_START, anns, error_of, invoke, logs, put, zipped
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

KIND = "php:8.4"
DEV = "action developer error"
NOT_A_DICT = "The action did not return a dictionary or array."

# docs/actions-php.md's hello (plus the version that runs it), and a second entry.
HELLO = """<?php
function main(array $args) : array
{
    $name = $args["name"] ?? "stranger";
    $greeting = "Hello $name!";
    echo $greeting;
    return ["greeting" => $greeting, "version" => PHP_MAJOR_VERSION . "." . PHP_MINOR_VERSION];
}

function niam(array $args) : array
{
    return ["entry" => "niam", "activation_id" => getenv('__OW_ACTIVATION_ID'),
            "action_name" => $_ENV['__OW_ACTION_NAME'], "namespace" => getenv('__OW_NAMESPACE')];
}
"""


c = kinds.client_fixture("php")


def test_listed(stack: Stack) -> None:
    kinds.family_is_listed(stack, "php", KIND, require_main=False)


def test_hello_cold_then_warm_with_logs(c: Client) -> None:
    _, cold, _ = kinds.cold_then_warm(c, KIND, HELLO, version="8.4")
    assert any(line.endswith(" stdout: Hello Ada!") for line in logs(c, cold["activationId"], "Hello Ada!"))


def test_main_names_another_function(c: Client) -> None:
    rec = invoke(c, put(c, KIND, HELLO, main="niam"))
    got = rec["response"]["result"]
    assert got["entry"] == "niam" and got["activation_id"] == rec["activationId"]
    assert got["action_name"] == "/" + anns(rec)["path"] and got["namespace"] == rec["namespace"]


def test_docs_results(c: Client) -> None:
    # An array is answered as an object (the runtime encodes `(object)$result`); no result at all is {}.
    name = put(c, KIND, '<?php\nfunction main(array $args) : array\n{\n    $arr=array("a","b","c");\n'
                        '    return $arr;\n}\n')
    assert c.post(f"actions/{name}", {}, blocking=True, result=True).json() == {"0": "a", "1": "b", "2": "c"}
    name = put(c, KIND, """<?php
function main($params) {
    if ($params['payload'] == 0) {
        return;
    } else if ($params['payload'] == 1) {
        return ['payload' => 'Hello, World!'] ;        // indicates normal completion
    } else if ($params['payload'] == 2) {
        return ['error' => 'payload must be 0 or 1'];  // indicates abnormal completion
    }
}
""")
    assert invoke(c, name, {"payload": 0})["response"]["result"] == {}
    assert invoke(c, name, {"payload": 1})["response"]["result"] == {"payload": "Hello, World!"}
    rec = invoke(c, name, {"payload": 2})
    assert error_of(rec) == ("application error", "payload must be 0 or 1")
    # An object with getArrayCopy(), or a stdClass, is an array.
    name = put(c, KIND, "<?php\nfunction main($p) {\n    $o = new ArrayObject();\n    $o['hello'] = 'world';\n"
                        "    return $o;\n}\n")
    assert invoke(c, name)["response"]["result"] == {"hello": "world"}


def test_zip_actions(c: Client) -> None:
    helper = "<?php\nfunction output($data) {\n    return ['result' => $data];\n}\n"
    index = ("<?php\nrequire __DIR__ . '/output.php';\nfunction main(array $args) {\n"
             "    return output($args['name'] ?? 'stranger');\n}\n")
    assert invoke(c, put(c, KIND, zipped({"index.php": index, "output.php": helper})))["response"]["result"] == {
        "result": "stranger"}
    # A vendor/ of the action's own replaces the runtime's (its autoload.php is loaded first).
    index = "<?php\nfunction main(array $args) {\n    return output($args['name'] ?? 'stranger');\n}\n"
    rec = invoke(c, put(c, KIND, zipped({"index.php": index, "vendor/autoload.php": helper})), {"name": "zip"})
    assert rec["response"]["result"] == {"result": "zip"}
    # Without one, the runtime's: Guzzle and ramsey/uuid, as OpenWhisk's image ships them.
    index = ("<?php\nuse Ramsey\\Uuid\\Uuid;\nuse GuzzleHttp\\Client;\nfunction main(array $args) {\n"
             "    new Client();\n    return ['uuid' => strlen(Uuid::uuid4()->toString()), 'exts' => "
             "array_values(array_intersect(['bcmath', 'curl', 'gd', 'intl', 'mbstring', 'mongodb', 'mysqli', "
             "'pdo_mysql', 'pdo_pgsql', 'pdo_sqlite', 'soap', 'zip'], get_loaded_extensions()))];\n}\n")
    assert invoke(c, put(c, KIND, zipped({"index.php": index})))["response"]["result"] == {
        "uuid": 36, "exts": ["bcmath", "curl", "gd", "intl", "mbstring", "mongodb", "mysqli", "pdo_mysql",
                             "pdo_pgsql", "pdo_sqlite", "soap", "zip"]}


def test_error_paths(c: Client) -> None:
    # An exception: the runner answers a non-JSON line, so a 502 (developer error); the exception is logged.
    rec = invoke(c, put(c, KIND, '<?php\nfunction main(array $args) : array {\n'
                                 '    throw new Exception("nooooo");\n}\n'))
    assert error_of(rec) == (DEV, NOT_A_DICT)
    assert any("stderr: Exception: nooooo in " in line for line in logs(c, rec["activationId"], "nooooo"))
    # A fatal error.
    rec = invoke(c, put(c, KIND, '<?php\nfunction main(array $args) : array {\n    eval("class Error {};");\n'
                                 '    return ["hello" => "world"];\n}\n'))
    assert error_of(rec) == (DEV, NOT_A_DICT)
    assert any("PHP Fatal error" in line for line in logs(c, rec["activationId"], "Fatal"))
    # Not an array.
    rec = invoke(c, put(c, KIND, '<?php\nfunction main(array $args) {\n    return "not a json object";\n}\n'))
    assert error_of(rec) == (DEV, NOT_A_DICT)
    assert any(line.endswith('stderr: Result must be an array but has type "string": not a json object')
               for line in logs(c, rec["activationId"], "Result must be"))
    # The process ends in the middle of a run (runtime-go's proxy: "command exited").
    rec = invoke(c, put(c, KIND, "<?php\nfunction main(array $args) {\n    exit(1);\n}\n"))
    assert error_of(rec) == (DEV, "command exited")
    # A syntax error: index.php does not load, the init fails.
    rec = invoke(c, put(c, KIND, "<?php\nfunction main(array $args) { return $args +; }\n"))
    assert error_of(rec) == (DEV, NO_START)
    assert any("PHP Parse error:  syntax error" in line for line in logs(c, rec["activationId"], "Parse error"))
    # No such function: a run that fails.
    rec = invoke(c, put(c, KIND, HELLO, main="nope"))
    assert error_of(rec) == (DEV, NOT_A_DICT)
    assert any("Call to undefined function nope()" in line for line in logs(c, rec["activationId"], "undefined"))


def test_timeout(c: Client) -> None:
    rec = invoke(c, put(c, KIND, "<?php\nfunction main(array $args) {\n    sleep(20);\n    return $args;\n}\n",
                        timeout=2000))
    assert error_of(rec) == (DEV, "The action exceeded its time limits of 2000 milliseconds.")
    assert anns(rec)["timeout"] is True
