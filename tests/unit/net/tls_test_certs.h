/* Test certificates (EC P-256, valid 100 years): a CA, a server and a client
 * certificate it signed (SAN 127.0.0.1, localhost), and one from another CA.
 * Generated once with openssl req/x509; only for tests. */
#ifndef TLS_TEST_CERTS_H
#define TLS_TEST_CERTS_H
static const char TT_CA_CRT[] = "-----BEGIN CERTIFICATE-----\n"
                                "MIIBezCCASGgAwIBAgIUZs7v2/nqeEW7xLqwNIfVoz/zjegwCgYIKoZIzj0EAwIw\n"
                                "EjEQMA4GA1UEAwwHVGVzdCBDQTAgFw0yNjEyMDYwNjUyMjNaGA8yMTI2MTExMjA2\n"
                                "NTIyM1owEjEQMA4GA1UEAwwHVGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
                                "A0IABMKEmT9zOyXZB2ijVlfRRDPd/XaIHN5BhOs4ZFb6Bl77an1yfklo+jjfKbDz\n"
                                "Gz0Hbsd5p21chQ1Bl5LJdoVWODejUzBRMB0GA1UdDgQWBBRlb97Lg+T2ZdwELNAc\n"
                                "50FdcSDvTDAfBgNVHSMEGDAWgBRlb97Lg+T2ZdwELNAc50FdcSDvTDAPBgNVHRMB\n"
                                "Af8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCG/PMEEtMpRLglCNVeaNb64/yw\n"
                                "Pu7Lg0vdPe6FeD47kwIgLMBRRiQWDFM2OjSack5XzZWGgKMuOQ2viG8GmVh44vM=\n"
                                "-----END CERTIFICATE-----\n";
static const char TT_SRV_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBpDCCAUqgAwIBAgIUSpd5JAaJCSzwC2IniZvqPy/A+YYwCgYIKoZIzj0EAwIw\n"
    "EjEQMA4GA1UEAwwHVGVzdCBDQTAgFw0yNjEyMDYwNjUyMjRaGA8yMTI2MTExMjA2\n"
    "NTIyNFowETEPMA0GA1UEAwwGc2VydmVyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD\n"
    "QgAESwLUkCOt+0Itg4KhlQXY0xcxuF9GvFCrHw/jLK097r6a7czDgdTYCNDkPyou\n"
    "+FlCNhN7z6A7+tTmTnekAAAJj6N9MHswGgYDVR0RBBMwEYcEfwAAAYIJbG9jYWxo\n"
    "b3N0MB0GA1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAdBgNVHQ4EFgQUNFh9\n"
    "1POMna59uM8hKkXMRZ4Q2ZYwHwYDVR0jBBgwFoAUZW/ey4Pk9mXcBCzQHOdBXXEg\n"
    "70wwCgYIKoZIzj0EAwIDSAAwRQIhAPMnGOAxRlnSrz/yzxzaqkz+FCCkXGIvZ1s5\n"
    "XcemecugAiBCvrK3eq51flCZlg/5haS9rIrzivY9m9kNjxdnXEHS3g==\n"
    "-----END CERTIFICATE-----\n";
static const char TT_SRV_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwGWpJJeDDh/f/GkB\n"
    "XRkcqNXbmjEjk6BJS/9SAFub+H2hRANCAARLAtSQI637Qi2DgqGVBdjTFzG4X0a8\n"
    "UKsfD+MsrT3uvprtzMOB1NgI0OQ/Ki74WUI2E3vPoDv61OZOd6QAAAmP\n"
    "-----END PRIVATE KEY-----\n";
static const char TT_CLI_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBpTCCAUqgAwIBAgIUSpd5JAaJCSzwC2IniZvqPy/A+YcwCgYIKoZIzj0EAwIw\n"
    "EjEQMA4GA1UEAwwHVGVzdCBDQTAgFw0yNjEyMDYwNjUyMjRaGA8yMTI2MTExMjA2\n"
    "NTIyNFowETEPMA0GA1UEAwwGY2xpZW50MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD\n"
    "QgAEDklQZrx4gOJ80xQy8Xh/2/fRTJri8+0hZv88+l1TYUhKWKyY1QbH6gQin/ql\n"
    "9APb3QqD1zJq1PtWm/p0S7juqKN9MHswGgYDVR0RBBMwEYcEfwAAAYIJbG9jYWxo\n"
    "b3N0MB0GA1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAdBgNVHQ4EFgQUlMbk\n"
    "5cK8e5bOqiCBjfHcWJ/v1zcwHwYDVR0jBBgwFoAUZW/ey4Pk9mXcBCzQHOdBXXEg\n"
    "70wwCgYIKoZIzj0EAwIDSQAwRgIhAJ8TaL9nBgDnxIrw1FImn+H+G8J+joY5UovQ\n"
    "OxBTWQh/AiEAt/rXRpkFlyCRwc+NyT/RMBodbegI3F7l3aZkbpOa/go=\n"
    "-----END CERTIFICATE-----\n";
static const char TT_CLI_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQX3CbboLKTFtWcN1\n"
    "Vog9u8MGnsw3t/99ItZARRo6912hRANCAAQOSVBmvHiA4nzTFDLxeH/b99FMmuLz\n"
    "7SFm/zz6XVNhSEpYrJjVBsfqBCKf+qX0A9vdCoPXMmrU+1ab+nRLuO6o\n"
    "-----END PRIVATE KEY-----\n";
static const char TT_EVIL_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBozCCAUmgAwIBAgIUKYzH7MfpcLX8UHmTLUU4DaL2ZI0wCgYIKoZIzj0EAwIw\n"
    "EzERMA8GA1UEAwwIT3RoZXIgQ0EwIBcNMjYxMjA2MDY1MjI0WhgPMjEyNjExMTIw\n"
    "NjUyMjRaMA8xDTALBgNVBAMMBGV2aWwwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
    "AAQMO9Lu4y8C+cHVcSeGiPIkTqBew0UA01cYj90/ZWeMI5R8kGNpEfn++wN2IFQs\n"
    "7gjSRDsBVIsEhhXHctbjicpxo30wezAaBgNVHREEEzARhwR/AAABgglsb2NhbGhv\n"
    "c3QwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMB0GA1UdDgQWBBSpvOrX\n"
    "FUes+dsbjaQPRYhqhC8hYTAfBgNVHSMEGDAWgBQRDyduzqvMlkaLrxgh4y280kHL\n"
    "+DAKBggqhkjOPQQDAgNIADBFAiAmxkx9qJpAZppWopbrGNLXFduQuBwamh4w+Igi\n"
    "PgC4HwIhAL4nh1k/cqqPhpEDDGKbcZCkJdGdrklNpM49TGZikkoz\n"
    "-----END CERTIFICATE-----\n";
static const char TT_EVIL_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgn6STWQNlWgZJ9xgP\n"
    "P9NI/KYRcnxVpKsgpMC8DzDbN0ShRANCAAQMO9Lu4y8C+cHVcSeGiPIkTqBew0UA\n"
    "01cYj90/ZWeMI5R8kGNpEfn++wN2IFQs7gjSRDsBVIsEhhXHctbjicpx\n"
    "-----END PRIVATE KEY-----\n";
#endif
