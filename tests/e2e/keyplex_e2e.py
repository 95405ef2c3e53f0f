"""Settings shared by the end-to-end fixtures and tests (a module of its own: every
test directory has a `conftest`, so tests do not import from it)."""

# The public Widevine test signer (Shaka Packager docs): a packager signs with it, keyplex
# verifies it.
SIGNER = "widevine_test"
AES_KEY = "1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9"
AES_IV = "d58ce954203b7c9a9a9d467f59839249"
TENANT = "acme"
USER, PASSWORD = "packager", "s3cret-acme"

CONFIG = f"""
[tenants.{TENANT}]
basic = [{{ user = "{USER}", password = "{PASSWORD}" }}]
playready_la_url = "https://acme.example/prls/contentlicenseservice/v1/licenses"
widevine_provider = "acme"
kid_override = true
widevine_signers = [{{ name = "{SIGNER}", aes_key = "{AES_KEY}", aes_iv = "{AES_IV}" }}]
"""
