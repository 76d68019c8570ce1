"""The Java kinds (java:21 on Debian trixie's OpenJDK 21, the default; java:17 on bookworm's OpenJDK 17), as OpenWhisk's
java:8 runtime behaves (apache/openwhisk-runtime-java core/java8, docs/actions-java.md): jars whose `main` names the
class (`--main Hello`, `com.example.MyMain#methodName`), gson's JsonObject in and out, cold then warm, logs, __OW_*
variables, and the error paths with its 502s and texts. The test jars are compiled by each kind's own JVM."""

from __future__ import annotations

import pytest

from contracts import entities
from tests.integration import kinds
from tests.integration.kinds import MALFORMED, anns, error_of, invoke, logs, put, uniq
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

KINDS = {"java:21": 21, "java:17": 17}
FAILED = "An error has occurred (see logs for details): "
ACTION_FAILED = "An error has occurred while invoking the action (see logs for details): "
DEV = "action developer error"

# docs/actions-java.md's examples (Hello prints its greeting and says which JVM runs it).
SOURCES = {
    "Hello.java": """import com.google.gson.JsonObject;

public class Hello {
    public static JsonObject main(JsonObject args) {
        String name = "stranger";
        if (args.has("name"))
            name = args.getAsJsonPrimitive("name").getAsString();
        JsonObject response = new JsonObject();
        response.addProperty("greeting", "Hello " + name + "!");
        System.out.println("Hello " + name + "!");
        response.addProperty("version", Runtime.version().feature());
        return response;
    }
}
""",
    "HelloArray.java": """import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
public class HelloArray {
    public static JsonArray main(JsonObject args) {
        JsonArray jsonArray = new JsonArray();
        jsonArray.add("a");
        jsonArray.add("b");
        return jsonArray;
    }
}
""",
    "com/example/MyMain.java": """package com.example;

import com.google.gson.JsonObject;

public class MyMain {
    public static JsonObject methodName(JsonObject args) {
        JsonObject r = new JsonObject();
        r.addProperty("entry", "methodName");
        for (String v : new String[] {"ACTIVATION_ID", "ACTION_NAME", "NAMESPACE", "DEADLINE"})
            r.addProperty(v.toLowerCase(), System.getenv("__OW_" + v));
        r.addProperty("loader", Thread.currentThread().getContextClassLoader() == MyMain.class.getClassLoader());
        return r;
    }
}
""",
    "Failing.java": """import com.google.gson.JsonObject;

public class Failing {
    public static JsonObject boom(JsonObject args) {
        System.out.println("about to fail");
        throw new IllegalStateException("boom");
    }
    public static JsonObject quit(JsonObject args) {
        System.exit(1);
        return args;
    }
    public static JsonObject nothing(JsonObject args) {
        return null;
    }
    public static JsonObject unhappy(JsonObject args) {
        JsonObject error = new JsonObject();
        error.addProperty("error", "This action is unhappy.");
        return error;
    }
    public static JsonObject slow(JsonObject args) throws InterruptedException {
        Thread.sleep(20000);
        return args;
    }
}
""",
}


c = kinds.client_fixture("java")


@pytest.fixture(scope="module")
def jars(stack: Stack) -> dict[str, str]:
    return {kind: kinds.compile_jar(f"{entities.RUNTIMES[kind].image}:latest", SOURCES) for kind in KINDS}


def test_listed_with_require_main(stack: Stack, c: Client, jars: dict[str, str]) -> None:
    kinds.family_is_listed(stack, "java", "java:21", require_main=True)
    # OpenWhisk's Exec.scala: a requireMain kind without `main` is refused.
    name = uniq("nomain")
    r = c.put(f"actions/{name}", {"exec": {"kind": "java:21", "code": jars["java:21"]}})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == MALFORMED + "'main' must be a string defined in 'exec' for 'java:21' actions"
    # java:default is the family's default kind.
    r = c.put(f"actions/{name}", {"exec": {"kind": "java:default", "code": jars["java:21"], "main": "Hello"}})
    assert r.status_code == 200, r.text
    assert r.json()["exec"] == {"kind": "java:21", "code": jars["java:21"], "binary": True, "main": "Hello"}


@pytest.mark.parametrize("kind", KINDS)
def test_hello_cold_then_warm_with_logs(c: Client, jars: dict[str, str], kind: str) -> None:
    name, cold, _ = kinds.cold_then_warm(c, kind, jars[kind], main="Hello", version=KINDS[kind])
    lines = logs(c, cold["activationId"], "Hello Ada!")
    assert [line.split(" ", 1)[1] for line in lines] == ["stdout: Hello Ada!"]  # no JVM warnings
    assert c.post(f"actions/{name}", {}, blocking=True, result=True).json()["greeting"] == "Hello stranger!"


@pytest.mark.parametrize("kind", KINDS)
def test_main_names_a_class_and_a_method(c: Client, jars: dict[str, str], kind: str) -> None:
    name = put(c, kind, jars[kind], main="com.example.MyMain#methodName")
    rec = invoke(c, name)
    got = rec["response"]["result"]
    assert got["entry"] == "methodName" and got["loader"] is True
    assert got["activation_id"] == rec["activationId"]
    assert got["action_name"] == "/" + anns(rec)["path"]
    assert got["namespace"] == rec["namespace"] and int(got["deadline"]) > rec["start"]


@pytest.mark.parametrize("kind", KINDS)
def test_array_result(c: Client, jars: dict[str, str], kind: str) -> None:
    name = put(c, kind, jars[kind], main="HelloArray")
    assert c.post(f"actions/{name}", {}, blocking=True, result=True).json() == ["a", "b"]


@pytest.mark.parametrize("kind", KINDS)
def test_init_failures(c: Client, jars: dict[str, str], kind: str) -> None:
    rec = invoke(c, put(c, kind, jars[kind], main="example.Nope"))
    assert error_of(rec) == (DEV, FAILED + "java.lang.ClassNotFoundException: example.Nope")
    assert any("java.lang.ClassNotFoundException: example.Nope" in line
               for line in logs(c, rec["activationId"], "ClassNotFoundException"))
    rec = invoke(c, put(c, kind, jars[kind], main="Hello#bogus"))
    assert error_of(rec) == (DEV, FAILED + "java.lang.NoSuchMethodException: bogus")
    # Source instead of a jar: java:8 base64-decodes the code it is given, and fails.
    rec = invoke(c, put(c, kind, SOURCES["Hello.java"], main="Hello"))
    status, error = error_of(rec)
    assert status == DEV and error.startswith(FAILED + "java.io.IOException: Illegal base64 character")


@pytest.mark.parametrize("kind", KINDS)
def test_run_failures(c: Client, jars: dict[str, str], kind: str) -> None:
    rec = invoke(c, put(c, kind, jars[kind], main="Failing#boom"))
    assert error_of(rec) == (DEV, ACTION_FAILED + "java.lang.IllegalStateException: boom")
    lines = logs(c, rec["activationId"], "IllegalStateException")
    assert any(line.endswith("stdout: about to fail") for line in lines)
    assert any(line.endswith("stderr: java.lang.IllegalStateException: boom") for line in lines)
    assert any("stderr: \tat Failing.boom(Failing.java" in line for line in lines)
    # System.exit from the action is refused (the JVM lives on), as java8action's security manager does.
    rec = invoke(c, put(c, kind, jars[kind], main="Failing#quit"))
    assert error_of(rec) == (DEV, ACTION_FAILED + "java.lang.SecurityException: System.exit(1) called from within "
                                                  "an action.")
    rec = invoke(c, put(c, kind, jars[kind], main="Failing#nothing"))
    assert error_of(rec) == (DEV, FAILED + "java.lang.NullPointerException: The action returned null")
    # An error the action returns is the action's: an application error.
    rec = invoke(c, put(c, kind, jars[kind], main="Failing#unhappy"))
    assert rec["response"]["status"] == "application error"
    assert rec["response"]["result"] == {"error": "This action is unhappy."}


@pytest.mark.parametrize("kind", KINDS)
def test_timeout(c: Client, jars: dict[str, str], kind: str) -> None:
    rec = invoke(c, put(c, kind, jars[kind], main="Failing#slow", timeout=3000))
    assert error_of(rec) == (DEV, "The action exceeded its time limits of 3000 milliseconds.")
    assert anns(rec)["timeout"] is True
