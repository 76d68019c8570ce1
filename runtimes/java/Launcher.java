/*
 * Streamwhisk's Java launcher for the ActionLoop proxy (runtimes/actionloop/proxy.py), started once per container
 * as `java ... Launcher <main> <code file>` from bin/exec (written by runtimes/java/compile).
 *
 * It behaves as OpenWhisk's java:8 runtime (apache/openwhisk-runtime-java core/java8, the java8action image):
 * - the code is a jar; `main` is `[package.]Class[#method]` (method `main` by default), the class is loaded from
 *   the jar (gson on the parent class path) and must declare a method of that name, else the init fails with
 *   "An error has occurred (see logs for details): <exception>" and the stack trace on stderr. Code that is not a
 *   jar is base64-decoded as java8action does with its `code`, and fails the same way.
 * - each run calls `public static JsonObject|JsonArray <method>(JsonObject|JsonArray)` (the parameter type
 *   follows the input), with the run's other keys as __OW_* environment variables. Its result is the answer;
 *   an exception thrown by it is "An error has occurred while invoking the action (see logs for details): <e>",
 *   anything else that goes wrong (no such method, null result) "An error has occurred (see logs for details):
 *   <e>": both 502s, developer errors. System.exit from the action throws a SecurityException instead of
 *   ending the container ("System.exit(N) called from within an action.").
 * Protocol: the ack ({"ok":true}) and each answer are one line on fd 3; the errors that java8action answers with
 * a 502 are sent as {"error": ..., "__ow_status": 502} (see the proxy).
 */

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.security.Permission;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;

public final class Launcher {
    static final String FAILED = "An error has occurred (see logs for details): ";
    static final String ACTION_FAILED = "An error has occurred while invoking the action (see logs for details): ";

    /** True while the action's method runs: only then is System.exit refused. */
    static volatile boolean inAction = false;

    public static void main(String[] argv) throws Exception {
        PrintStream answers = new PrintStream(new FileOutputStream("/dev/fd/3"), true, "UTF-8");
        String entry = argv.length > 0 ? argv[0] : "main";
        Path code = Paths.get(argv.length > 1 ? argv[1] : "exec.jar");

        URLClassLoader loader;
        Class<?> mainClass;
        String methodName;
        try {
            loader = new URLClassLoader(new URL[] {jarOf(code).toUri().toURL()}, Launcher.class.getClassLoader());
            String[] parts = entry.split("#");
            mainClass = loader.loadClass(parts[0]);
            methodName = parts.length > 1 ? parts[1] : "main";
            boolean declared = false;
            for (Method m : mainClass.getDeclaredMethods()) {
                declared |= m.getName().equals(methodName);
            }
            if (!declared) {
                throw new NoSuchMethodException(methodName);
            }
        } catch (Throwable e) {
            e.printStackTrace(System.err);
            System.err.flush();
            answers.println(failure(FAILED + e));
            System.exit(1);
            return;
        }

        refuseExit();
        if (System.getenv("__OW_WAIT_FOR_ACK") != null) {
            answers.println("{\"ok\":true}");
        }

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String answer;
            Thread current = Thread.currentThread();
            ClassLoader before = current.getContextClassLoader();
            try {
                answer = run(line, loader, mainClass, methodName);
            } catch (InvocationTargetException ite) {
                Throwable cause = ite.getCause() != null ? ite.getCause() : ite;
                cause.printStackTrace(System.err);
                answer = failure(ACTION_FAILED + cause);
            } catch (Throwable e) {
                e.printStackTrace(System.err);
                answer = failure(FAILED + e);
            } finally {
                inAction = false;
                current.setContextClassLoader(before);
            }
            System.out.flush();
            System.err.flush();
            answers.println(answer);
        }
    }

    static String run(String line, ClassLoader loader, Class<?> mainClass, String methodName) throws Exception {
        JsonObject request = JsonParser.parseString(line).getAsJsonObject();
        JsonElement value = request.get("value");
        boolean object = value.isJsonObject();
        Map<String, String> env = new HashMap<>();
        for (Map.Entry<String, JsonElement> e : request.entrySet()) {
            try {
                if (!e.getKey().equalsIgnoreCase("value")) {
                    env.put("__OW_" + e.getKey().toUpperCase(), e.getValue().getAsString());
                }
            } catch (Exception ignored) {
                // not a string: not an environment variable
            }
        }
        Thread.currentThread().setContextClassLoader(loader);
        Method method = mainClass.getMethod(methodName, object ? JsonObject.class : JsonArray.class);
        method.setAccessible(true);
        int modifiers = method.getModifiers();
        Class<?> returns = method.getReturnType();
        if ((returns != JsonObject.class && returns != JsonArray.class) || !Modifier.isStatic(modifiers)
                || !Modifier.isPublic(modifiers)) {
            throw new NoSuchMethodException(methodName);
        }
        setEnv(env);
        Object result;
        inAction = true;
        try {
            result = method.invoke(null, object ? value.getAsJsonObject() : value.getAsJsonArray());
        } finally {
            inAction = false;
        }
        if (result == null) {
            throw new NullPointerException("The action returned null");
        }
        return result.toString();
    }

    /** The jar to load: the code itself (a zip), or else its base64 decoding, as java8action does. */
    static Path jarOf(Path code) throws Exception {
        byte[] head = new byte[2];
        try (InputStream in = new FileInputStream(code.toFile())) {
            if (in.read(head) == 2 && head[0] == 'P' && head[1] == 'K') {
                return code;
            }
        }
        Path jar = Files.createTempFile("useraction", ".jar");
        try (InputStream decoded = Base64.getDecoder().wrap(new FileInputStream(code.toFile()))) {
            Files.copy(decoded, jar, StandardCopyOption.REPLACE_EXISTING);
        }
        return jar;
    }

    static String failure(String message) {
        JsonObject error = new JsonObject();
        error.addProperty("error", message);
        error.addProperty("__ow_status", 502);
        return error.toString();
    }

    /** Adds to what System.getenv sees (needs --add-opens java.base/java.util=ALL-UNNAMED). */
    @SuppressWarnings("unchecked")
    static void setEnv(Map<String, String> values) {
        try {
            Map<String, String> env = System.getenv();
            Field field = env.getClass().getDeclaredField("m");
            field.setAccessible(true);
            ((Map<String, String>) field.get(env)).putAll(values);
        } catch (Exception ignored) {
            // the environment stays as it was
        }
    }

    /**
     * A security manager that allows everything but System.exit from the action (java8action's
     * WhiskSecurityManager). Needs -Djava.security.manager=allow on Java 18+; the JDK's deprecation warning
     * (printed once on the first call) goes nowhere, so that it does not end up in the action's logs.
     */
    @SuppressWarnings("removal")
    static void refuseExit() {
        SecurityManager manager = new SecurityManager() {
            @Override
            public void checkPermission(Permission p) {
            }

            @Override
            public void checkPermission(Permission p, Object context) {
            }

            @Override
            public void checkExit(int status) {
                if (inAction) {
                    throw new SecurityException("System.exit(" + status + ") called from within an action.");
                }
            }
        };
        Field warnings = null;
        Object saved = null;
        try {
            warnings = System.class.getDeclaredField("initialErrStream");
            warnings.setAccessible(true);
            saved = warnings.get(null);
            warnings.set(null, new PrintStream(OutputStream.nullOutputStream()));
        } catch (Exception e) {
            warnings = null;
        }
        try {
            System.setSecurityManager(manager);
        } finally {
            if (warnings != null) {
                try {
                    warnings.set(null, saved);
                } catch (Exception ignored) {
                    // keep going without it
                }
            }
        }
    }

    private Launcher() {
    }
}
