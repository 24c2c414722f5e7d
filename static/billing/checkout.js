// Settle checkout: tokenize the card with Stripe.js into the checkout's
// SetupIntent, then ask our server to charge it. Card data goes from this
// page straight to the processor; our server only sees the SetupIntent id.
(function () {
  "use strict";

  const configEl = document.getElementById("checkout-config");
  const form = document.getElementById("payment-form");
  if (!configEl || !form) return;
  const config = JSON.parse(configEl.textContent);

  const payButton = document.getElementById("pay-button");
  const payAmount = document.getElementById("pay-amount");
  const paymentError = document.getElementById("payment-error");
  const amountError = document.getElementById("amount-error");
  const otherWrap = document.getElementById("other-amount-wrap");
  const otherInput = document.getElementById("amount-other");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const fullLabel = payAmount.textContent;
  let payLabel = fullLabel;

  let clientSecret = config.clientSecret;
  let setupIntentId = config.setupIntentId;
  let busy = false;

  if (typeof Stripe === "undefined") {
    showError("The secure card form could not load. Please refresh the page, or call the clinic to pay.");
    return;
  }
  const stripe = Stripe(config.publishableKey);
  const elements = stripe.elements();
  const card = elements.create("card", { hidePostalCode: false });
  card.mount("#card-element");
  card.on("change", function (event) {
    if (event && event.error) showError(event.error.message); else hideError();
  });
  payButton.disabled = false;

  function showError(message) {
    paymentError.textContent = message;
    paymentError.hidden = false;
  }
  function hideError() {
    paymentError.hidden = true;
    paymentError.textContent = "";
  }
  function showAmountError(message) {
    amountError.textContent = message;
    amountError.hidden = false;
    otherInput.setAttribute("aria-invalid", "true");
  }
  function hideAmountError() {
    amountError.hidden = true;
    otherInput.removeAttribute("aria-invalid");
  }
  function setBusy(value) {
    busy = value;
    payButton.disabled = value;
    payAmount.textContent = value ? "…" : payLabel;
    payButton.setAttribute("aria-busy", value ? "true" : "false");
  }
  function chosenAmount() {
    const choice = form.querySelector("input[name=amount_choice]:checked").value;
    return choice === "full" ? config.fullAmount : otherInput.value.trim();
  }
  // What the patient typed, shown as the server shows money (portal.money):
  // the clinic's currency prefix, thousands separators and the currency's
  // decimals ("5000" -> "$5,000.00"). "" when it is not an amount yet. String
  // arithmetic only, so no float ever rounds what is shown.
  function formatTyped(text) {
    const exponent = config.currencyExponent;
    let cleaned = text.trim().replace(/,/g, "");
    const prefix = config.currencySymbol;
    if (prefix && cleaned.indexOf(prefix) === 0) cleaned = cleaned.slice(prefix.length).trim();
    const match = /^([0-9]*)(?:\.([0-9]*))?$/.exec(cleaned);
    if (!match || (match[1] === "" && !match[2])) return "";
    const fraction = match[2] || "";
    if (fraction.length > exponent) return "";
    const whole = (match[1].replace(/^0+(?=[0-9])/, "") || "0").replace(/\B(?=([0-9]{3})+(?![0-9]))/g, ",");
    const decimals = exponent ? "." + (fraction + "0".repeat(exponent)).slice(0, exponent) : "";
    return config.currencyPrefix + whole + decimals;
  }
  // The button says what will be charged. The server re-validates the amount.
  function syncPayLabel() {
    const other = form.querySelector("input[name=amount_choice]:checked").value === "other";
    payLabel = other ? formatTyped(otherInput.value) : fullLabel;
    if (!busy) payAmount.textContent = payLabel;
  }
  function syncAmountChoice() {
    const other = form.querySelector("input[name=amount_choice]:checked").value === "other";
    otherWrap.hidden = !other;
    if (other) otherInput.focus();
    syncPayLabel();
  }
  form.querySelectorAll("input[name=amount_choice]").forEach(function (radio) {
    radio.addEventListener("change", syncAmountChoice);
  });
  otherInput.addEventListener("input", syncPayLabel);
  syncAmountChoice();

  async function post(url, data) {
    const body = new URLSearchParams(data || {});
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken, "Content-Type": "application/x-www-form-urlencoded" },
      body: body,
    });
    let json = {};
    try { json = await response.json(); } catch (e) { json = {}; }
    return { status: response.status, body: json };
  }

  async function renewSetup() {
    const result = await post(config.renewUrl);
    if (result.body.setupClientSecret) {
      clientSecret = result.body.setupClientSecret;
      setupIntentId = result.body.setupIntentId;
    }
  }

  // Stripe.js's own text is shown only for the card form's field checks
  // ("Your card number is incomplete."); anything else gets our wording,
  // which always says whether money moved.
  function setupErrorMessage(error) {
    if (error && error.type === "validation_error" && error.message) return error.message;
    if (error && (error.code === "card_declined" || error.type === "card_error")) {
      return "Your card was declined. You have not been charged. Please try another card or contact your bank.";
    }
    if (error && /authenticat/i.test(error.message || "")) {
      return "Your bank could not confirm it was you (3-D Secure). You have not been charged. Please try again or use another card.";
    }
    return "We could not check this card. You have not been charged. Please check the details and try again, or use another card.";
  }

  function adoptFreshSetup(body) {
    if (body.setupClientSecret) {
      clientSecret = body.setupClientSecret;
      setupIntentId = body.setupIntentId;
    }
  }

  async function handleOutcome(body) {
    if (body.state === "succeeded" || body.state === "pending") {
      window.location.assign(body.resultUrl);
      return true;
    }
    if (body.state === "requires_action") {
      // 3-D Secure: the bank asks the cardholder to confirm.
      const auth = await stripe.confirmCardPayment(body.clientSecret);
      const refreshed = await post(body.refreshUrl);
      if (auth.error && refreshed.body.state !== "succeeded" && refreshed.body.state !== "failed") {
        showError(auth.error.message || "Your bank could not confirm the payment. You have not been charged.");
        return false;
      }
      return handleOutcome(refreshed.body);
    }
    adoptFreshSetup(body);
    showError(body.message || "Your payment did not go through. You have not been charged.");
    return false;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (busy) return;
    hideError();
    hideAmountError();
    const amount = chosenAmount();
    if (!amount) {
      showAmountError("Enter the amount you would like to pay.");
      return;
    }
    setBusy(true);
    try {
      const setup = await stripe.confirmCardSetup(clientSecret, { payment_method: { card: card } });
      if (setup.error) {
        showError(setupErrorMessage(setup.error));
        await renewSetup();
        return;
      }
      const result = await post(config.submitUrl, { amount: amount, setup_intent_id: setupIntentId });
      if (result.body.state === "invalid") {
        if (result.body.field === "amount") showAmountError(result.body.message);
        else showError(result.body.message);
        if (result.body.message && result.body.message.indexOf("card form has expired") !== -1) await renewSetup();
        return;
      }
      if (await handleOutcome(result.body)) return;
    } catch (err) {
      showError("We could not reach the payment service. You have not been charged. Please try again.");
    } finally {
      if (document.visibilityState !== "hidden") setBusy(false);
    }
  });
})();
