// Signs webhook deliveries with the providers' own SDKs, for tests/e2e/schemes.rs. Nothing
// here computes an HMAC itself: each header comes from the SDK's public signing function.
//
// stdin: a JSON array of {provider, secret, body, timestamp?, id?}
// stdout: a JSON array of the header values, one per request, in order.
import { sign as githubSign } from '@octokit/webhooks-methods';
import Stripe from 'stripe';
import standardwebhooks from 'standardwebhooks';

const { Webhook } = standardwebhooks;
// The key is never used: generateTestHeaderString is local, and no request is made.
const stripe = new Stripe('sk_test_placeholder');

async function sign({ provider, secret, body, timestamp, id }) {
  switch (provider) {
    case 'github':
      // @octokit/webhooks-methods: "sha256=<hex>" for X-Hub-Signature-256.
      return await githubSign(secret, body);
    case 'stripe':
      // The stripe package's test helper: "t=<timestamp>,v1=<hex>" for Stripe-Signature.
      return stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp });
    case 'standard-webhooks':
      // standardwebhooks (npm): "v1,<base64>" for webhook-signature.
      return new Webhook(secret).sign(id, new Date(timestamp * 1000), body);
    default:
      throw new Error(`unknown provider ${provider}`);
  }
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const requests = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const out = [];
for (const request of requests) out.push(await sign(request));
process.stdout.write(JSON.stringify(out));
