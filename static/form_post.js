// OAuth 2.0 Form Post Response Mode: submit the response to the client at once. The page
// works without JavaScript too (a Continue button).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("form-post");
  if (form) {
    form.submit();
  }
});
