// A person's signing key, in their browser only. The login page reads the identity file here (FileReader),
// imports its Ed25519 seed into WebCrypto as a NON-EXTRACTABLE key and signs the console's one-time challenge;
// the file and its private key are never sent. The key is kept in IndexedDB (the console's screens are separate
// pages, so a key held by one page's memory would be gone at the next click): a CryptoKey stored there can
// sign but its bytes can never be read back, not even by this script. It is deleted at logout and whenever the
// login page opens. Acts (approvals, deployments) are prepared by the console; this script signs the bytes
// it is given and sends back the signature only.
(function () {
  "use strict";
  // PKCS#8 for Ed25519 (RFC 8410): this prefix, then the 32-byte seed
  var PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
  var DB = "mlbus-console", STORE = "keys", HELD = "signing-key";
  // What this page signs, and nothing else: a login is this text and the console's challenge (no act's bytes
  // can be: they begin with {"record":), an act is one of these records, about what the form chose.
  var LOGIN_PREFIX = "mlbus console login ";
  var SIGNED_HERE = ["mlbus.ApprovalSubmitted", "mlbus.DeploymentRequested"];
  // what the person chose in the form, each checked in the bytes to sign (a field left empty is the server's default)
  var CHOSEN = ["model", "version", "decision", "action", "strategy", "percent", "steps", "reason"];

  function fromBase64(text) {
    var raw = atob(text), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function toBase64(buffer) {
    return btoa(String.fromCharCode.apply(null, new Uint8Array(buffer)));
  }

  function keyStore(mode, use) {
    return new Promise(function (resolve, reject) {
      var opened = indexedDB.open(DB, 1);
      opened.onupgradeneeded = function () { opened.result.createObjectStore(STORE); };
      opened.onerror = function () { reject(opened.error); };
      opened.onsuccess = function () {
        var tx = opened.result.transaction(STORE, mode), request = use(tx.objectStore(STORE));
        tx.oncomplete = function () { opened.result.close(); resolve(request.result); };
        tx.onerror = function () { opened.result.close(); reject(tx.error); };
      };
    });
  }

  var held = {
    save: function (entry) { return keyStore("readwrite", function (s) { return s.put(entry, HELD); }); },
    load: function () { return keyStore("readonly", function (s) { return s.get(HELD); }); },
    forget: function () { return keyStore("readwrite", function (s) { return s.delete(HELD); }); }
  };

  function readFile(file) {
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(new Error("the file could not be read")); };
      reader.readAsText(file);
    });
  }

  async function importIdentity(file) {
    var identity;
    try { identity = JSON.parse(await readFile(file)); } catch (e) { identity = null; }
    if (identity && identity.private_key_encrypted) {
      throw new Error("this identity file's key is encrypted with a passphrase (keygen --encrypt): the console " +
                      "cannot open it yet; log in with a file whose key is not encrypted");
    }
    if (!identity || !identity.name || !identity.key_id || !identity.private_key) {
      throw new Error("that is not an mlbus identity file (the JSON with your name, key_id and private_key)");
    }
    var seed = fromBase64(identity.private_key);
    if (seed.length !== 32) throw new Error("the identity file's private key is not an Ed25519 seed");
    var pkcs8 = new Uint8Array(48);
    pkcs8.set(PKCS8_PREFIX);
    pkcs8.set(seed, 16);
    var key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
    seed.fill(0);
    pkcs8.fill(0);
    return { name: identity.name, key_id: identity.key_id, key: key };
  }

  async function sign(key, bytes) {
    return toBase64(await crypto.subtle.sign({ name: "Ed25519" }, key, bytes));
  }

  async function post(url, fields) {
    var response = await fetch(url, { method: "POST", body: new URLSearchParams(fields), credentials: "same-origin",
                                      headers: { "Accept": "application/json" } });
    var answer = null;
    try { answer = await response.json(); } catch (e) { answer = null; }
    if (!response.ok || !answer) throw new Error((answer && answer.refused) || "the console answered " + response.status);
    return answer;
  }

  function submitHidden(action, fields) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = action;
    Object.keys(fields).forEach(function (name) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = fields[name];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  function say(form, text) {
    var shown = form.querySelector(".sign-error");
    if (!shown) {
      shown = document.createElement("p");
      shown.className = "error sign-error";
      shown.setAttribute("role", "alert");
      form.appendChild(shown);
    }
    shown.textContent = text;
  }

  async function logIn(form) {
    var error = document.getElementById("login-error");
    try {
      var file = document.getElementById("identity-file").files[0];
      if (!file) throw new Error("choose your identity file");
      var identity = await importIdentity(file);
      var issued = await post("/login/challenge", { login_token: form.elements.login_token.value });
      if (!/^[A-Za-z0-9_-]{16,128}$/.test(issued.challenge)) throw new Error("the console sent a strange challenge");
      var signature = await sign(identity.key, new TextEncoder().encode(LOGIN_PREFIX + issued.challenge));
      await held.save(identity);
      document.getElementById("identity-file").value = "";
      form.elements.key_id.value = identity.key_id;
      form.elements.challenge.value = issued.challenge;
      form.elements.signature.value = signature;
      form.submit();        // key_id, challenge, signature, login_token, next: the file input has no name
    } catch (e) {
      error.textContent = String(e.message || e);
      error.hidden = false;
    }
  }

  // the bytes the console asks this page to sign: the act the person chose, in their name, or an error
  function checked(bytes, fields, entry) {
    var act = JSON.parse(new TextDecoder().decode(bytes));
    var value = act.value || {};
    var other = CHOSEN.filter(function (name) {
      var bare = function (x) { return String(x).replace(/\s+/g, ""); };    // "10, 25" reads as [10,25]
      return fields[name] !== undefined && bare(fields[name]) !== "" && bare(value[name]) !== bare(fields[name]);
    });
    if (SIGNED_HERE.indexOf(act.record) < 0 || value.signer_key !== entry.key_id || other.length) {
      throw new Error("the console asked to sign something other than this form's act: not signed");
    }
    return bytes;
  }

  // an act: the console prepares it and returns its canonical bytes; signed here, only the signature goes back
  async function act(form, submitter) {
    // getAttribute: a deployment form has a field named "action", which form.action would return
    var target = form.getAttribute("action");
    try {
      var fields = Object.fromEntries(new FormData(form, submitter));
      var prepared = await post(target, fields);
      var entry = await held.load();
      if (!entry || entry.key_id !== prepared.signer_key) {
        throw new Error("this browser holds no signing key for this session: log out and log in again");
      }
      var signature = await sign(entry.key, checked(fromBase64(prepared.bytes), fields, entry));
      submitHidden(target, { csrf: fields.csrf, act: prepared.act, signature: signature });
    } catch (e) {
      say(form, String(e.message || e));
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id === "login") {
      event.preventDefault();
      logIn(form);
    } else if (form.hasAttribute("data-sign")) {
      event.preventDefault();
      act(form, event.submitter);
    } else if (form.hasAttribute("data-forget-key")) {
      event.preventDefault();
      held.forget().catch(function () {}).then(function () { form.submit(); });
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (document.getElementById("login")) held.forget().catch(function () {});
  });
})();
