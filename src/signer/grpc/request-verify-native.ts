/** Moved to infra, where the cosigner's share check uses it too. */
export { verifyRequestSignatureNative } from '../../infra/request-verify-native.js';
